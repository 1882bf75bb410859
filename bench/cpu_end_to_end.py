"""CPU end to end: `conformal-superres predict` of a 4K output and a 40-crop `calibrate`, today's code against another checkout.

Each run is a fresh process started through the package's own console entry; wall time, user and system CPU time,
minor page faults and peak resident memory are the child's (`os.wait4`). Runs alternate between the two codes and
the table gives the median of `--repeats` runs of each. Outputs are compared: the calibration limits, the mask, the
prediction's pixels and the sigma map of the new code against the baseline's.

  python bench/cpu_end_to_end.py --baseline SRC     # SRC: the older code, e.g. `git archive <commit> | tar -x -C SRC`
  python bench/cpu_end_to_end.py --baseline SRC --repeats 3 --only predict
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = str(Path(__file__).resolve().parents[1])
# the console entry of each layout: `conformal_superres.cli` was a module before it became a package
ENTRY = {'new': 'from conformal_superres.cli.main import main; main()',
         'old': 'from conformal_superres.cli import main; main()'}

def entry(src:str)->str:
    return ENTRY['new'] if (Path(src) / 'conformal_superres' / 'cli' / 'main.py').exists() else ENTRY['old']

def run_reaped(src:str, argv:list, env_extra:dict|None=None)->dict:
    "One command in a fresh process: its wall time, CPU times, minor page faults and peak RSS (from `os.wait4`)."
    env = dict(os.environ, PYTHONPATH=src, **(env_extra or {}))
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        p = subprocess.Popen([sys.executable, '-c', entry(src), *argv], env=env, stdout=fo, stderr=fe)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if p.returncode:
            fe.seek(0); raise SystemExit(f"{src}: {argv[0]} failed ({p.returncode})\n{fe.read().decode()[-3000:]}")
    return dict(wall=wall, user=ru.ru_utime, sys=ru.ru_stime, minflt=ru.ru_minflt, peak_gib=ru.ru_maxrss / 2**20)

def make_inputs(work:Path, lr_width:int, n_photos:int):
    "A low-res input (`lr_width` wide, 16:9) and a folder of bundled photos for calibrate."
    import numpy as np
    from PIL import Image
    sys.path.insert(0, HERE)
    from conformal_superres.data.photos import bundled_photos
    photos = [p for p in bundled_photos(('skimage', 'sklearn')) if min(p.load().shape[-2:]) >= 256][:n_photos]
    if len(photos) < n_photos: raise SystemExit(f"only {len(photos)} bundled photos of at least 256 px (skimage, sklearn); pass a smaller --photos")
    (work / 'photos').mkdir()
    for i, p in enumerate(photos):
        a = (p.load().permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(a).save(work / 'photos' / f'{i:02d}.png')
    from skimage import data
    h = lr_width * 9 // 16
    n = -(-lr_width // 512)
    a = np.tile(data.astronaut(), (n, n, 1))[:h, :lr_width]   # 512x512 photo, repeated
    Image.fromarray(a).save(work / 'input.png')
    return [p.id for p in photos]

def compare_outputs(work:Path, a:str, b:str)->dict:
    "Whether the two codes wrote the same limits, mask, prediction pixels and sigma."
    import numpy as np
    from PIL import Image
    la = [d['limit'] for d in json.loads((work / f'cal-{a}.json').read_text())['limits']]
    lb = [d['limit'] for d in json.loads((work / f'cal-{b}.json').read_text())['limits']]
    px = lambda k, f: np.asarray(Image.open(work / f'out-{k}' / f'input_{f}'))
    res = {'limits': la == lb}
    if (work / f'out-{a}').exists() and (work / f'out-{b}').exists():
        for f in ('mask.png', 'prediction.png'): res[f] = bool(np.array_equal(px(a, f), px(b, f)))
        sa, sb = (np.load(work / f'out-{k}' / 'input_sigma.npy') for k in (a, b))
        res['sigma.npy'] = bool(np.array_equal(sa, sb))
        res['sigma max |diff|'] = float(np.abs(sa - sb).max())
        res['png bytes (old, new)'] = [sum((work / f'out-{k}' / f'input_{f}').stat().st_size
                                           for f in ('prediction.png', 'mask.png', 'overlay.png', 'sigma.png')) for k in (a, b)]
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--baseline', required=True, help='source folder of the code to compare against')
    ap.add_argument('--repeats', type=int, default=3, help='runs of each command with each code (alternating); the median counts')
    ap.add_argument('--only', choices=('predict', 'calibrate'), help='one command only (both by default)')
    ap.add_argument('--lr-width', type=int, default=1024, help='width of the low-res input (16:9): 1024 gives 4096x2304')
    ap.add_argument('--photos', type=int, default=10, help='bundled photos for calibrate (4 crops of 128 px each)')
    ap.add_argument('-M', type=int, default=8, help='samples per image')
    ap.add_argument('--new-args', default='', help='extra options for the new code, e.g. "--threads 2"')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='cpu-e2e-'))
    ids = make_inputs(work, a.lr_width, a.photos)
    codes = {'old': str(Path(a.baseline).resolve()), 'new': HERE}
    extra = {'old': [], 'new': a.new_args.split()}
    cal = lambda k, i: ['calibrate', '--data', str(work / 'photos'), '--crop', '128', '--crops-per-image', '4', '-M', str(a.M),
                        '--alphas', '0.1,0.2', '--out', str(work / f'cal-{k}.json'), '--quiet', '--overwrite', *extra[k]]
    pred = lambda k, i: ['predict', '--calibration', str(work / f'cal-{k}.json'), '--alpha', '0.1', str(work / 'input.png'),
                         '--out', str(work / f'out-{k}'), '--quiet', '--overwrite', *extra[k]]
    times = {(c, k): [] for c in ('calibrate', 'predict') for k in codes}
    loads = [os.getloadavg()[0]]
    wanted = (a.only,) if a.only else ('calibrate', 'predict')
    for c, argv in (('calibrate', cal), ('predict', pred)):
        reps = a.repeats if c in wanted else 1 if c == 'calibrate' else 0   # predict needs each code's calibration file
        for i in range(reps):
            for k in (('old', 'new') if i % 2 == 0 else ('new', 'old')):
                r = run_reaped(codes[k], argv(k, i)); times[c, k].append(r); loads.append(os.getloadavg()[0])
                print(f"{c:9s} {k}: wall {r['wall']:6.1f} s  user {r['user']:6.1f}  sys {r['sys']:5.1f}  "
                      f"minor faults {r['minflt'] / 1e6:5.2f} M  peak {r['peak_gib']:.2f} GiB  (load {loads[-1]:.2f})", flush=True)
    med = lambda rs, f: statistics.median(r[f] for r in rs)
    print(f"\nCPU end to end, median of {a.repeats}; {os.cpu_count()} CPUs, 1-minute load average seen "
          f"{min(loads):.2f}-{max(loads):.2f}; predict: {a.lr_width}x{a.lr_width * 9 // 16} -> x4, "
          f"calibrate: {4 * a.photos} crops of 128 px from {a.photos} bundled photos; M={a.M}")
    print('| command | code | wall (s) | user (s) | sys (s) | minor faults (M) | peak RSS (GiB) | wall new/old |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for c in ('predict', 'calibrate'):
        if c not in wanted: continue
        for k in ('old', 'new'):
            rs = times[c, k]
            ratio = f"{med(rs, 'wall') / med(times[c, 'old'], 'wall'):.2f}x" if k == 'new' else ''
            print(f"| {c} | {k} | {med(rs, 'wall'):.1f} | {med(rs, 'user'):.1f} | {med(rs, 'sys'):.1f} | "
                  f"{med(rs, 'minflt') / 1e6:.2f} | {med(rs, 'peak_gib'):.2f} | {ratio} |")
    print('same outputs:', json.dumps(compare_outputs(work, 'old', 'new')))

if __name__ == '__main__': main()
