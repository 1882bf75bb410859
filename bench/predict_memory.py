"""Time and peak memory of `conformal-superres predict` on a 960x540 input (3840x2160 output) with the embedded model.

Each variant runs in a fresh process; peak memory is the process's maximum resident set size.
  python bench/predict_memory.py                    # this checkout: tiled predict
  python bench/predict_memory.py --baseline SRC     # also the code in SRC (e.g. `git archive <commit>` of the
                                                    # previous release unpacked there), predicting the whole image
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r'''
import json, os, resource, sys, time
import numpy as np, torch
from PIL import Image
torch.set_num_threads(int(os.environ.get('THREADS', '2')))
from conformal_superres.cli.main import main
work = sys.argv[1]
t0 = time.time()
argv = ['predict', '--calibration', f'{work}/cal.json', f'{work}/input.png', '--out', f'{work}/out-{os.getpid()}']
try: main(argv + (['--quiet', '--tile', sys.argv[3]] if sys.argv[2] == 'new' else []))
except SystemExit as e:
    if e.code: raise
print(json.dumps({'seconds': time.time() - t0, 'peak_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
'''

def run(src:str, work:str, new:bool=True, tile:int=256)->dict:
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS=os.environ.get('THREADS', '2'))
    r = subprocess.run([sys.executable, '-c', CHILD, work, 'new' if new else 'old', str(tile)], env=env, capture_output=True, text=True)
    if r.returncode: raise SystemExit(f"{src}: failed\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--baseline', help='source folder of the code to compare against')
    ap.add_argument('-M', type=int, default=8)
    ap.add_argument('--tiles', default='256', help='comma-separated --tile values to measure')
    a = ap.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    work = tempfile.mkdtemp(prefix='predict-memory-')
    import numpy as np
    from PIL import Image
    from skimage import data
    Image.fromarray(np.tile(data.astronaut(), (2, 2, 1))[:540, :960]).save(f'{work}/input.png')   # 960x540
    cal = subprocess.run([sys.executable, '-c', f'''
import numpy as np
from PIL import Image
from skimage import data
from conformal_superres.cli.main import main
import os
os.makedirs("{work}/photos")
Image.fromarray(data.chelsea()).save("{work}/photos/c.png")
main(["calibrate", "--data", "{work}/photos", "--crop", "32", "--crops-per-image", "40", "-M", "{a.M}", "--alphas", "0.1",
      "--out", "{work}/cal.json", "--quiet"])'''], env=dict(os.environ, PYTHONPATH=here), capture_output=True, text=True)
    if cal.returncode: raise SystemExit(cal.stderr[-2000:])
    rows = []
    if a.baseline: rows.append(('baseline (whole image)', run(a.baseline, work, new=False)))
    for t in map(int, a.tiles.split(',')): rows.append((f'this checkout (--tile {t})', run(here, work, tile=t)))
    print(f"predict 960x540 -> 3840x2160, embedded model, M={a.M}, {os.environ.get('THREADS', '2')} threads")
    print(f"| code | seconds | peak memory (GiB) |\n|---|---:|---:|")
    for name, r in rows: print(f"| {name} | {r['seconds']:.1f} | {r['peak_gib']:.2f} |")

if __name__ == '__main__': main()
