"""Benchmark: `conformal-superres demo --task colorization` against its budget of 3 minutes on two cores.

Runs the demo's own code path (`cli.run_demo(task='colorization')`, default settings: 176 crops of
64x64 from the 22 held-out photos, M = 8) with 1 and with 2 torch threads, and prints wall and CPU
time next to the budget. On a machine shared with other jobs, 2 OpenMP threads can wait on each
other far longer than they compute; CPU time of the 1-thread run is the figure that does not
depend on the load.

    OMP_NUM_THREADS=1 python bench/colorization_demo.py          # both thread counts
    python bench/colorization_demo.py --threads 2

Prints a table; not a test.
"""
import argparse, os, sys, tempfile
from pathlib import Path
try: import conformal_superres
except ModuleNotFoundError: sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
import torch
from conformal_superres.cli.demo import run_demo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measure

BUDGET = 180.0   # seconds, the limit on two cores

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    args = ap.parse_args()
    rows = []
    for t in args.threads:
        torch.set_num_threads(t)
        with tempfile.TemporaryDirectory() as d, Measure(f'{t} thread(s)', memory=False) as m:
            r = run_demo(Path(d), task='colorization', progress=False)
        rows.append((t, m.seconds, m.cpu, max(r['summary'], key=lambda s: s['fidelity_error'] - s['alpha'])))
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print('| torch threads | wall (s) | CPU (s) | budget (s) | within | worst alpha: error in mask |')
    print('|---:|---:|---:|---:|:---:|---|')
    for t, wall, cpu, worst in rows:
        print(f"| {t} | {wall:.1f} | {cpu:.1f} | {BUDGET:.0f} | {'yes' if wall <= BUDGET else 'NO'} | "
              f"{worst['alpha']:g}: {worst['fidelity_error']:.4f} |")

if __name__ == '__main__': main()
