"""Benchmark: the exact sweep of `conformal_superres.calibration` against the paper's reference algorithm.

The reference code calibrates by bisection: for each alpha, bisect t over [min sigma, max sigma] to a
tolerance of 1e-10, each step a full pass over every pixel of every image to compute the calibrated
risk (sum_i max{D_i : sigma_i <= t} + B) / (n + 1). It is written here vectorised in numpy with
preallocated per-image buffers (the fastest numpy form we found: one risk pass over 100 maps of
512x512 or 1024x1024 took 5 to 7 times less time than `np.where(sig <= t, D, 0).max(axis=(1, 2))` on
the whole stack, on 2 cores), so that the comparison is fair.

Both run on the same float32 maps in the same process. The streaming `Calibrator` is measured
separately: images are regenerated one at a time from their seeds, never held together.

    python bench/calibration.py            # n=100 of 512x512 and n=400 of 1024x1024, 40 alphas
    python bench/calibration.py --quick    # a small run (seconds)

Prints a table; not a test.
"""
import argparse, gc, resource, sys, time, tracemalloc
from pathlib import Path
import numpy as np
try: import conformal_superres
except ModuleNotFoundError: sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from conformal_superres.calibration import Calibrator, calibrate_threshold

B = 3.0


def make_image(seed, i, h, w):
    "One synthetic calibration image from its own seeded generator: sigma informative of D, ties across images."
    g = np.random.default_rng([seed, i])
    scale = np.float32(g.uniform(0.5, 1.5))  # image-level difficulty
    sigma = g.random((h, w), dtype=np.float32) ** 2 * scale  # float32 grid values: many ties across images
    fid = np.minimum(np.abs(g.standard_normal((h, w), dtype=np.float32)) * sigma * np.float32(2), np.float32(B))
    return sigma, fid


def make_stack(seed, n, h, w):
    sig, fid = np.empty((n, h, w), np.float32), np.empty((n, h, w), np.float32)
    for i in range(n): sig[i], fid[i] = make_image(seed, i, h, w)
    return sig, fid


def bisection_thresholds(sig, fid, alphas, bound=B, tol=1e-10):
    "The reference algorithm: per alpha, bisection with a full pass over all pixels per step."
    n, h, w = sig.shape
    m, buf = np.empty((h, w), bool), np.empty((h, w), np.float32)

    def risk(t):
        t = np.float32(t)  # compare in the maps' dtype, as the reference does
        total = 0.
        for i in range(n):
            np.less_equal(sig[i], t, out=m)
            np.multiply(fid[i], m, out=buf)  # D >= 0, so the max over the mask is max(D * mask)
            total += float(buf.max())
        return (total + bound) / (n + 1)

    lo0, hi0 = float(sig.min()), float(sig.max())
    out, passes = [], 0
    for a in alphas:
        lo, hi = lo0, hi0
        passes += 2
        if risk(hi) <= a: out.append(np.inf); continue
        if risk(lo) > a: out.append(-np.inf); continue
        while hi - lo > tol:
            mid = (lo + hi) / 2
            passes += 1
            if risk(mid) <= a: lo = mid
            else: hi = mid
        out.append(float(np.float32(lo)))
    return np.array(out), passes


def limit_counts(sig, limits):
    "Pixels of the stack with sigma < r* per limit (the streaming calibrator's mask)."
    flat = np.sort(sig.ravel())
    return np.searchsorted(flat, np.asarray(limits, np.float32), side='left')


def mask_counts(sig, thresholds):
    "Number of calibration pixels with sigma <= t, for each t."
    flat = np.sort(sig.ravel())
    return np.searchsorted(flat, np.asarray(thresholds, np.float32), side='right')


def peak_of(f, *args):
    "Run f under tracemalloc; return (result, peak bytes allocated during the call)."
    gc.collect(); tracemalloc.start()
    try:
        r = f(*args)
        return r, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def streaming(seed, n, h, w, alphas, traced=False):
    """The streaming calibrator on images regenerated one at a time; time counts only the `add` calls.
    With `traced` (tracemalloc running), also the largest memory in use during an `add`: the image's
    maps, the records so far and the temporaries of `add` (the generator's own temporaries are freed
    before and not counted)."""
    c, t_add, peak = Calibrator(B), 0., 0
    for i in range(n):
        s, d = make_image(seed, i, h, w)
        gc.collect()
        if traced: tracemalloc.reset_peak()
        t0 = time.perf_counter(); c.add(s, d); t_add += time.perf_counter() - t0
        if traced: peak = max(peak, tracemalloc.get_traced_memory()[1])
        del s, d
    return c, t_add, c.limits(alphas), peak


def run_case(n, h, w, n_alphas, seed, rows):
    mb = 2**20
    print(f"\n== n={n} images of {h}x{w}, {n_alphas} alphas ==", flush=True)
    sig, fid = make_stack(seed, n, h, w)
    one_image = 2 * h * w * 4
    print(f"maps held in memory (float32 sigma + D): {sig.nbytes * 2 / mb:.0f} MiB; one image's maps {one_image / mb:.1f} MiB", flush=True)

    probe = Calibrator(B)
    for i in range(min(n, 20)): probe.add(sig[i], fid[i])
    # levels where the masks are nontrivial: from a little above B/(n+1) up to about half of R's range
    r_max = probe.risk(np.inf)
    alphas = np.linspace(0.05, 0.5, n_alphas) * r_max
    alphas = alphas[alphas > B / (n + 1)]

    t0 = time.perf_counter(); exact = calibrate_threshold(sig, fid, alphas, B); t_fast = time.perf_counter() - t0
    print(f"exact sweep: {t_fast:.2f} s", flush=True)
    t0 = time.perf_counter(); bis, passes = bisection_thresholds(sig, fid, alphas); t_bis = time.perf_counter() - t0
    print(f"bisection: {t_bis:.1f} s ({passes} full passes)", flush=True)

    _, peak_fast = peak_of(calibrate_threshold, sig, fid, alphas, B)
    _, peak_bis = peak_of(bisection_thresholds, sig, fid, alphas[:1])  # every alpha allocates the same
    del sig, fid; gc.collect()
    (c, _, _, peak_stream), _ = peak_of(streaming, seed, n, h, w, alphas, True)
    _, t_add2, ts2, _ = streaming(seed, n, h, w, alphas)  # timed without tracemalloc's overhead
    records_mib = sum(r.sigma.nbytes + r.loss.nbytes for r in c.records) / mb

    sig, fid = make_stack(seed, n, h, w)
    ce, cb, cs = mask_counts(sig, exact), mask_counts(sig, bis), limit_counts(sig, ts2)
    frac = ce / sig.size
    print(f"mask fraction over the calibration pixels: {frac.min():.3f} .. {frac.max():.3f}")
    print(f"pixels with sigma <= t, exact vs bisection: identical for {int((ce == cb).sum())}/{len(alphas)} alphas"
          + ("" if (ce == cb).all() else f"; differences {(cb - ce)[ce != cb].tolist()}"))
    print(f"calibration pixels with sigma <= t (exact) vs sigma < r* (streaming limit form): identical for {int((ce == cs).sum())}/{len(alphas)} alphas"
          + ("" if (ce == cs).all() else f"; differences {(cs - ce)[ce != cs].tolist()} pixels"))
    print(f"records kept by the streaming calibrator: {sum(map(len, c.records))} ({records_mib:.2f} MiB); "
          f"streaming peak during add {peak_stream / mb:.1f} MiB vs 2 x one image's maps + records = "
          f"{2 * one_image / mb + records_mib:.1f} MiB")
    del sig, fid; gc.collect()
    rows.append((f"{n} x {h}x{w}", len(alphas), t_bis, peak_bis / mb, t_fast, peak_fast / mb, t_add2, peak_stream / mb,
                 one_image / mb, t_bis / t_fast, int((ce == cb).sum())))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='a small run: n=20 of 128x128 and n=10 of 256x256')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    cases = [(20, 128, 128, 40), (10, 256, 256, 40)] if args.quick else [(100, 512, 512, 40), (400, 1024, 1024, 40)]
    rows = []
    for n, h, w, k in cases: run_case(n, h, w, k, args.seed, rows)
    print("\nwall times in seconds; peak memory in MiB (tracemalloc): for bisection and exact, allocated on top of the "
          "stacked maps they are given; for streaming, all in use during an add (that image's maps, records, temporaries)")
    head = ["case", "alphas", "bisect s", "bisect MiB", "exact s", "exact MiB", "stream s", "stream MiB",
            "1 image MiB", "speed-up", "same masks"]
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([r[0], str(r[1]), f"{r[2]:.1f}", f"{r[3]:.1f}", f"{r[4]:.2f}", f"{r[5]:.1f}", f"{r[6]:.2f}",
                          f"{r[7]:.1f}", f"{r[8]:.1f}", f"{r[9]:.0f}x", f"{r[10]}/{r[1]}"]))
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == '__main__':
    main()
