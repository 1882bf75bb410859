#!/usr/bin/env bash
# One run on a CUDA machine (at most about 9.5 minutes: run it with a 600-second limit): SinSR's GPU notebook cells, its benchmark and its profile.
#
# Writes bench/results/sinsr_gpu.md (the table to commit) and logs in bench/results/; when $OUT is set (a folder
# that comes back from the machine) they are copied there after every step, so a run stopped early still returns
# what it finished. Steps, most important first, each with its own time limit:
#   1. bench/sinsr.py, official precision, autoencoder on whole 512-pixel tiles (the original's), batched and naive, 2048x2048 first
#   2. the notebook's `#| gpu` cells: nbdev_test --flags gpu --path nbs/models/15_sinsr.ipynb
#   3. bench/sinsr.py at 2048x2048 with smaller autoencoder chunks (128) and channels-last, and in bf16
#   4. bench/sinsr_profile.py on the GPU (top CUDA operations at 2048x2048)
#   5. bench/sinsr.py at 2048x2048 with torch.compile (compiles during the warm-up)
# Needs python3 with a CUDA build of torch (>= 2.3), numpy and numba. For nbdev and its helpers, run
# bench/gpu_wheels.sh first on a machine with PyPI and bring ./.whl along: they are installed into /tmp/site.
# Usage, from the repository root: bash bench/gpu_check.sh
# (SINSR_CHECK_EXTRA='--tiny --device cpu' bash bench/gpu_check.sh checks the script itself on a CPU in a minute or two.)
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
R=bench/results; mkdir -p $R
X=${SINSR_CHECK_EXTRA:-}
MD=$R/sinsr_gpu.md; LOG=$R/sinsr_gpu.log
save() { if [ -n "${OUT:-}" ]; then cp -f $R/sinsr_gpu* "$OUT"/ 2>/dev/null; fi; }
step() { local limit=$1; shift; echo "== $(date -u +%T) $*" | tee -a $LOG; timeout "$limit" "$@" 2>&1 | tee -a $LOG; echo "== rc ${PIPESTATUS[0]}" | tee -a $LOG; save; }
if [ -d .whl ] && ! python3 -c 'import nbdev' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-}
: > $LOG; rm -f $MD
nvidia-smi -L 2>&1 | tee -a $LOG
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' 2>&1 | tee -a $LOG
{ echo "# SinSR on $(python3 -c 'import torch; print(torch.cuda.get_device_name())'), $(date -u +%F)"; echo
  echo "Written by bench/gpu_check.sh; random weights of the full official configuration; M = 10 draws of one image;"
  echo "samples/s of SinSR.sample (batched, M draws) and SinSR.sample_naive (the official loop, one draw after another: timed on 3 draws);"
  echo "FLOPs counted on the meta device; each row is written as soon as it is measured."; } > $MD
step 200 python3 bench/sinsr.py --sizes 2048 1024 256 --m 10 --precision official --max-batch 4 --no-4k --out $MD $X
step 140 nbdev_test --path nbs/models/15_sinsr.ipynb --flags gpu --do_print
step 60 python3 bench/sinsr.py --sizes 2048 --m 10 --precision official --max-batch 8 --ae-tile 128 --channels-last --no-naive --no-4k --out $MD $X
step 45 python3 bench/sinsr.py --sizes 2048 --m 10 --precision bf16 --max-batch 4 --no-naive --no-4k --out $MD $X
step 60 python3 bench/sinsr_profile.py --device cuda --size 2048 --m 2 --top 15
step 60 python3 bench/sinsr.py --sizes 2048 --m 10 --precision official --max-batch 4 --compile --channels-last --no-naive --no-4k --out $MD $X
echo "== $(date -u +%T) done" | tee -a $LOG; save
