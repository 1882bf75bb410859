"The README's example is code a user will paste: run it as written."
import re, os
import torch
from pathlib import Path

README = Path(__file__).resolve().parent.parent / 'README.md'

def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)

def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text(encoding='utf-8'))
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(blocks[0], 'README.md', 'exec'), ns)
    cm = ns['cm']
    assert (tmp_path / 'calibration.json').exists()
    assert ns['p'].mask.dtype == torch.bool and ns['p'].mask.shape == ns['p'].sigma.shape
    assert set(cm.thresholds) == {0.1, 0.2}
