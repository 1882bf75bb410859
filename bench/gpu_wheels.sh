#!/usr/bin/env bash
# Download, on a machine with access to PyPI, the wheels that bench/gpu_check.sh installs on a CUDA machine
# whose Python (3.12) already has torch, numpy, numba and matplotlib but not nbdev and its helpers.
# Run from the repository root; it fills ./.whl (keep it out of git, e.g. in .git/info/exclude).
set -euo pipefail
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl \
  nbdev==2.4.14 execnb==0.1.18 fastcore==1.12.47 ghapi==1.1.1 fastgit==0.1.4 asttokens==3.0.2 astunparse==1.6.3 \
  watchdog==7.1.1 ipython==9.18.1 ipython_pygments_lexers==1.1.1 jedi==0.20.1 parso==0.8.7 matplotlib-inline==0.2.2 \
  pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53 wcwidth==0.9.4 stack-data==0.6.3 executing==2.3.0 \
  pure_eval==0.2.4 traitlets==5.16.1
ls .whl | wc -l; du -sh .whl
