#!/usr/bin/env bash
# Build the documentation site into _docs/ offline: nbdev's processors, then Sphinx + myst-nb + furo
# with a local MathJax (see tools/build_docs.py). Uses the Python of the active or project virtual
# environment: set PYTHON to choose another. Needs the dev extra: pip install -e ".[dev]".
# (Where Quarto is installed, `nbdev_docs` builds the Quarto site from nbs/_quarto.yml instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-}
if [ -z "$py" ]; then
  for c in .venv/bin/python .build/venv/bin/python python3; do
    if [ -x "$c" ] || command -v "$c" >/dev/null 2>&1; then py=$c; break; fi
  done
fi
if ! "$py" -c 'import nbdev, sphinx, myst_nb, furo' 2>/dev/null; then
  echo "the docs tools are missing for $py: pip install -e '.[dev]' (or set PYTHON)" >&2; exit 1
fi
export MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
exec "$py" tools/build_docs.py "$@"
