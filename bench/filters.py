#!/usr/bin/env python
"""Benchmark of the package's box and Gaussian filters against the libraries' own, at the sizes users run.

Not a test: it prints a table. Rows, per map size (512^2, 2048^2, 3840x2160; one float32 map):
- CPU: `filters.box_filter(x, k)` (compiled running sums) against `scipy.ndimage.uniform_filter(x, k, mode='mirror')`,
  and `filters.gaussian_filter(x, s)` (FFT per row for radii above 8, shifted copies below) against
  `scipy.ndimage.gaussian_filter(x, s, mode='mirror', truncate=4)`; the edge convention is the same (scipy's
  'mirror', torch's 'reflect'), so the maps agree to rounding, and the largest difference is shown.
- torch kernels (what GPUs run; here timed on the CPU, `_kernels._CPU_KERNEL = 'torch'`): the same calls against
  `kornia.filters.box_blur(..., border_type='reflect')` and `kornia.filters.gaussian_blur2d(..., border_type='reflect')`
  with the same radius, and `colour.rgb_to_lab` against `kornia.color.rgb_to_lab` on a (1,3,H,W) image; only
  when kornia is installed (it is not a dependency: `pip install kornia`).
The ratio is library time / package time: above 1, the package is faster. Timings are the best of `--repeat`
runs after one warm-up (which also compiles the numba kernels); torch and scipy run on `--threads` threads
(scipy.ndimage is single-threaded whatever the setting).

    python bench/filters.py                 # all sizes, box 5 and 31, Gaussian 2, 8 and 64; a few minutes
    python bench/filters.py --quick         # 512^2 and 2048^2, box 5 and 31, Gaussian 2 and 64
"""
from __future__ import annotations
import argparse, os, time
import numpy as np
import torch
from scipy import ndimage
import conformal_superres._kernels as kernels
from conformal_superres.colour import rgb_to_lab
from conformal_superres.filters import box_filter, gaussian_filter


def best(fn, repeat):
    fn()                                                   # warm-up (and numba compilation)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return min(ts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import kornia
    except ImportError:
        kornia = None
    sizes = [(512, 512), (2048, 2048)] + ([] if args.quick else [(2160, 3840)])
    boxes, sigmas = (5, 31), ((2, 64) if args.quick else (2, 8, 64))
    rng = np.random.default_rng(0)
    rows = []
    for H, W in sizes:
        a = rng.random((H, W)).astype(np.float32)
        x = torch.from_numpy(a)
        for k in boxes:
            ours = best(lambda: box_filter(x, k), args.repeat)
            lib = best(lambda: ndimage.uniform_filter(a, k, mode='mirror'), args.repeat)
            err = float(np.abs(box_filter(x, k).numpy().astype(np.float64) - ndimage.uniform_filter(a.astype(np.float64), k, mode='mirror')).max())
            rows.append(('CPU', f'box {k}', f'{H}x{W}', 'scipy uniform_filter', ours, lib, err))
        for s in sigmas:
            ours = best(lambda: gaussian_filter(x, s), args.repeat)
            lib = best(lambda: ndimage.gaussian_filter(a, s, mode='mirror', truncate=4.0), args.repeat)
            err = float(np.abs(gaussian_filter(x, s).numpy().astype(np.float64) - ndimage.gaussian_filter(a.astype(np.float64), s, mode='mirror', truncate=4.0)).max())
            rows.append(('CPU', f'gaussian {s}', f'{H}x{W}', 'scipy gaussian_filter', ours, lib, err))
        if kornia is not None:
            kernels._CPU_KERNEL = 'torch'
            try:
                x4 = x[None, None]
                for k in boxes:
                    ours = best(lambda: box_filter(x, k), args.repeat)
                    lib = best(lambda: kornia.filters.box_blur(x4, (k, k), border_type='reflect'), args.repeat)
                    err = float((box_filter(x, k) - kornia.filters.box_blur(x4, (k, k), border_type='reflect')[0, 0]).abs().max())
                    rows.append(('torch', f'box {k}', f'{H}x{W}', 'kornia box_blur', ours, lib, err))
                for s in sigmas:
                    r = int(4 * s + 0.5)
                    if 2 * r + 1 > min(H, W): continue
                    ours = best(lambda: gaussian_filter(x, s), args.repeat)
                    kg = lambda: kornia.filters.gaussian_blur2d(x4, (2 * r + 1, 2 * r + 1), (float(s), float(s)), border_type='reflect')
                    lib = best(kg, args.repeat)
                    err = float((gaussian_filter(x, s) - kg()[0, 0]).abs().max())
                    rows.append(('torch', f'gaussian {s}', f'{H}x{W}', 'kornia gaussian_blur2d', ours, lib, err))
                img = torch.from_numpy(rng.random((1, 3, H, W)).astype(np.float32))
                ours = best(lambda: rgb_to_lab(img), args.repeat)
                lib = best(lambda: kornia.color.rgb_to_lab(img), args.repeat)
                err = float((rgb_to_lab(img) - kornia.color.rgb_to_lab(img)).abs().max())
                rows.append(('torch', 'rgb_to_lab', f'{H}x{W}', 'kornia rgb_to_lab', ours, lib, err))
            finally: kernels._CPU_KERNEL = 'numba'
            img = torch.from_numpy(rng.random((1, 3, H, W)).astype(np.float32))
            ours = best(lambda: rgb_to_lab(img), args.repeat)
            lib = best(lambda: kornia.color.rgb_to_lab(img), args.repeat)
            rows.append(('CPU', 'rgb_to_lab', f'{H}x{W}', 'kornia rgb_to_lab', ours, lib, float((rgb_to_lab(img) - kornia.color.rgb_to_lab(img)).abs().max())))
        print(f"done {H}x{W}", flush=True)
    print(f"\ntorch threads {torch.get_num_threads()}, numba threads {kernels.numba.get_num_threads()}, best of {args.repeat}; "
          f"ratio = library / package (> 1: the package is faster); max |diff| in the maps' units (Lab units for rgb_to_lab)")
    print(f"| path | filter | size | library | package s | library s | ratio | max abs diff |")
    print(f"|---|---|---|---|---:|---:|---:|---:|")
    for path, f, size, lib_name, ours, lib, err in rows:
        print(f"| {path} | {f} | {size} | {lib_name} | {ours:.4f} | {lib:.4f} | {lib / ours:.2f} | {err:.1e} |")


if __name__ == '__main__':
    main()
