#!/usr/bin/env python
"""Benchmark of the uncertainty map sigma: the package's `Uncertainty(kernel='box:31', smoothing=64)`
against the reference pipeline of the paper's code, at the paper's size (2048 x 2048, M = 10).

Not a test: it prints a table of wall and CPU times, peak memory and accuracy.

    python bench/sigma_pipeline.py                   # 2048 x 2048, M = 10: about a minute on 2 cores (68 s measured on a
                                                     # busy machine, 32 s of it the reference pipeline, 16 s the float64 check)
    python bench/sigma_pipeline.py --size 256 --m 4  # quick run
    python bench/sigma_pipeline.py --threads 1       # torch.set_num_threads(1) for every row

Rows:
- ours (tensor):   `Uncertainty('box:31', smoothing=64)` on all samples held as one (M,1,3,H,W) float32 tensor,
                   with the package's CPU code: the compiled (numba) Lab-and-moments pass and box filter, the
                   FFT Gaussian;
- ours, torch kernels: the same call with the `torch` band kernels that other devices (GPUs) run, here on
                   the CPU (`colour._CPU_KERNEL = 'torch'`), for comparison;
- ours (streamed): the same on a generator that draws the samples one at a time (drawing included; the time
                   of the drawing alone is shown on its own row);
- reference:       the paper code's route: every sample to CIELAB with `skimage.color.rgb2lab` (as that code
                   does; float32 in, float32 out), normalised, per-channel moments of the M samples in float32,
                   `torch.nn.functional.avg_pool2d(k=31, stride=1, padding=15)` (count_include_pad=True) on the
                   moments, the formula, the mean over channels, then `skimage.filters.gaussian(sigma=64)`
                   (its defaults: mode 'nearest', truncate 4). Its three stages are also timed separately.
Accuracy of ours is measured against a direct float64 computation of the same formula on the same float32
samples: normalised Lab in float64, mean_M[S^2*K] - (mean_M[S*K])^2 with every sample filtered by
`scipy.ndimage.uniform_filter`, then `scipy.ndimage.gaussian_filter`, both in mode 'mirror' (the package's
edge convention). The reference pipeline is a different computation (zero-padded average at the edges,
'nearest' Gaussian), so its difference to the float64 map is reported for information only.

Wall time depends on what else runs on the machine; CPU time (user + system of this process, all its
threads) much less, so both are shown, with the load average before and after. Peak memory is the rise
of the process's peak resident memory (VmHWM, reset through /proc/self/clear_refs) during each row,
above what the process held before it.
"""
from __future__ import annotations
import argparse, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import data, filters as skfilters
from skimage.color import rgb2lab
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the package of this checkout
import conformal_superres.colour as colour
from conformal_superres.colour import normalised_lab
from conformal_superres.uncertainty import Uncertainty
from _measure import Measure  # bench/_measure.py (this script's folder)


def make_image(size:int)->torch.Tensor:
    "The astronaut, upscaled to size x size: (1,3,size,size) in [0,1]."
    img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size=(size, size), mode='bicubic', align_corners=False).clamp(0, 1)

def amplitude(size:int)->torch.Tensor:
    "Noise amplitude that varies across the image (0.005 at the corners to 0.1 in rings)."
    u = torch.linspace(-1, 1, size)
    r = (u[:, None] ** 2 + u[None] ** 2).sqrt()
    return 0.005 + 0.095 * (0.5 + 0.5 * torch.cos(6 * torch.pi * r)) * (r < 1)

def draw(img, amp, i:int, seed:int)->torch.Tensor:
    "Sample i: the image plus spatially varying Gaussian noise, (1,1,3,H,W) float32."
    g = torch.Generator().manual_seed(seed * 100_003 + i)
    return (img + amp * torch.randn(img.shape, generator=g)).clamp(0, 1)[None]


def reference_pipeline(samples:torch.Tensor, k:int, smoothing:float, stages:dict)->np.ndarray:
    "The paper code's route as described above; samples (M,1,3,H,W) float32. Fills `stages` with (wall, cpu) per stage."
    with Measure('lab', quiet=True) as m:
        scale, shift = np.array([100, 254, 254], np.float32), np.array([0, 0.5, 0.5], np.float32)
        lab = torch.stack([torch.from_numpy(rgb2lab(s[0].permute(1, 2, 0).numpy()) / scale + shift).permute(2, 0, 1)[None]
                           for s in samples])                                  # (M,1,3,H,W) float32
        m1, m2 = lab.mean(0), (lab ** 2).mean(0)
        del lab
    stages['skimage rgb2lab + moments'] = m
    with Measure('pool', quiet=True) as m:
        p1 = F.avg_pool2d(m1, k, stride=1, padding=k // 2)
        p2 = F.avg_pool2d(m2, k, stride=1, padding=k // 2)
        sigma = (p2 - p1 ** 2).mean(1)[0]
    stages['avg_pool2d'] = m
    with Measure('gauss', quiet=True) as m: out = skfilters.gaussian(sigma.numpy(), sigma=smoothing)
    stages['skimage gaussian'] = m
    return out

def float64_reference(img, amp, m:int, seed:int, k:int, smoothing:float)->np.ndarray:
    "Direct float64 computation of mean_M[S^2*K] - (mean_M[S*K])^2, then the Gaussian, scipy 'mirror' edges."
    acc1 = acc2 = 0
    for i in range(m):
        S = normalised_lab(draw(img, amp, i, seed)[0].double())[0].numpy()  # (3,H,W) float64 of the float32 sample
        acc1 = acc1 + ndi.uniform_filter(S, (1, k, k), mode='mirror')
        acc2 = acc2 + ndi.uniform_filter(S * S, (1, k, k), mode='mirror')
    sigma = (acc2 / m - (acc1 / m) ** 2).mean(0)
    return ndi.gaussian_filter(sigma, smoothing, mode='mirror', truncate=4.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--size', type=int, default=2048, help='image height and width (default 2048)')
    p.add_argument('--m', type=int, default=10, help='number of samples M (default 10)')
    p.add_argument('--k', type=int, default=31, help='box width of the patch variance (default 31)')
    p.add_argument('--smoothing', type=float, default=64.0, help='Gaussian std of the final smoothing (default 64)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument('--repeat', type=int, default=1, help='time our rows this many times and keep the fastest (default 1)')
    p.add_argument('--skip-reference', action='store_true', help='do not run the (slow) reference pipeline')
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    print(f"sigma pipeline benchmark: {a.size} x {a.size}, M = {a.m}, box:{a.k}, smoothing {a.smoothing:g}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average before: {' '.join(f'{x:.2f}' for x in load0)}", flush=True)
    img, amp = make_image(a.size), amplitude(a.size)
    u = Uncertainty(kernel=f'box:{a.k}', smoothing=a.smoothing)
    samples = torch.cat([draw(img, amp, i, a.seed) for i in range(a.m)])  # (M,1,3,H,W) float32
    u(samples[:2, :, :, :64, :64])  # first call: caches of constants, thread start-up

    def best(name, fn):
        runs = []
        for _ in range(a.repeat):
            with Measure(name) as m: out = fn()
            runs.append(m)
        return out, min(runs, key=lambda m: m.seconds)
    ours, mt = best('ours (tensor input)', lambda: u(samples))
    colour._CPU_KERNEL = 'torch'
    u(samples[:2, :, :, :64, :64])
    ours_torch, mtt = best('ours, torch kernels (as on GPUs; tensor input)', lambda: u(samples))
    colour._CPU_KERNEL = 'numba'
    torch_kernel_diff = float((ours_torch - ours).abs().max() / ours.abs().max())
    ours_streamed, ms = best('ours (streamed, drawing included)', lambda: u(draw(img, amp, i, a.seed) for i in range(a.m)))
    assert torch.equal(ours, ours_streamed), "tensor and streamed inputs disagree"
    def draw_all():
        for i in range(a.m): draw(img, amp, i, a.seed)
    _, md = best('drawing the samples alone (no sigma)', draw_all)
    rows, stages = [mt, mtt, ms], {}
    if not a.skip_reference:
        with Measure('reference (skimage rgb2lab, avg_pool2d, skimage gaussian)') as mr:
            ref = reference_pipeline(samples, a.k, a.smoothing, stages)
        rows.append(mr)
    del samples

    t0 = time.perf_counter()
    exact = float64_reference(img, amp, a.m, a.seed, a.k, a.smoothing)
    t_exact = time.perf_counter() - t0
    ours = ours[0].numpy()
    err = np.abs(ours - exact)
    load1 = os.getloadavg()

    print()
    print(f"| {'pipeline':<58} | {'wall s':>7} | {'CPU s':>7} | {'peak MiB':>8} | {'wall ratio':>10} | {'CPU ratio':>9} |")
    print(f"|{'-' * 60}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 12}|{'-' * 11}|")
    for m in rows:
        wr = f"{mr.seconds / m.seconds:9.1f}x" if not a.skip_reference else '-'
        cr = f"{mr.cpu / m.cpu:8.1f}x" if not a.skip_reference else '-'
        print(f"| {m.name:<58} | {m.seconds:7.2f} | {m.cpu:7.2f} | {m.peak / 2**20:8.0f} | {wr:>10} | {cr:>9} |")
    for label, m in [('  of which ' + k, v) for k, v in stages.items()] + [(md.name, md)]:
        print(f"| {label:<58} | {m.seconds:7.2f} | {m.cpu:7.2f} | {m.peak / 2**20:8.0f} | {'':>10} | {'':>9} |")
    print()
    print(f"samples held as a tensor: {a.m * 3 * a.size ** 2 * 4 / 2**20:.0f} MiB (float32)")
    print(f"ours vs the direct float64 formula (scipy 'mirror', {t_exact:.1f} s): max |diff| {err.max():.3e}, "
          f"max |diff| / max sigma {err.max() / np.abs(exact).max():.3e}, "
          f"max elementwise relative {np.max(err / np.maximum(np.abs(exact), 1e-300)):.3e}  "
          f"(sigma range {exact.min():.3e} .. {exact.max():.3e})")
    print(f"torch kernels vs ours: max |diff| / max sigma {torch_kernel_diff:.3e} (their Lab values are float32)")
    if not a.skip_reference:
        d = np.abs(ref - exact) / np.abs(exact).max()
        e = a.k // 2 + int(4 * a.smoothing + 0.5)  # beyond this distance from the edges the padding conventions do not matter
        inner = f"; farther than {e} px from the edges {d[e:-e, e:-e].max():.3e}" if a.size > 2 * e else ''
        print(f"reference pipeline vs the same float64 map (zero-padded pooling, 'nearest' Gaussian, float32: "
              f"information only): max |diff| / max sigma {d.max():.3e}{inner}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load0)}; after: {' '.join(f'{x:.2f}' for x in load1)}")


if __name__ == '__main__':
    main()
