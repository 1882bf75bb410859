"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not used here).

Markdown cells are copied; code cells become ```python blocks, with nbdev directives removed;
cells marked `#| hide` are left out; stored text outputs follow their cell as a plain block.
Run from the repository root: `python tools/make_readme.py`."""
import json, re, sys
from pathlib import Path

def cell_text(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def convert(nb_path:Path)->str:
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    parts = []
    for cell in nb['cells']:
        src = cell_text(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(src.strip()); continue
        if cell['cell_type'] != 'code': continue
        lines = src.split('\n')
        directives = [l for l in lines if re.match(r'^#\|', l)]
        if any(re.match(r'^#\|\s*(hide|exporti?\b)', d) for d in directives): continue
        code = '\n'.join(l for l in lines if not re.match(r'^#\|', l)).strip()
        if code: parts.append(f"```python\n{code}\n```")
        for out in cell.get('outputs', []):
            text = out.get('text') or out.get('data', {}).get('text/plain')
            if text:
                text = ''.join(text) if isinstance(text, list) else text
                parts.append(f"```\n{text.rstrip()}\n```")
    return '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    readme = convert(root/'nbs'/'index.ipynb')
    if '--check' in sys.argv:
        sys.exit(0 if (root/'README.md').read_text(encoding='utf-8') == readme else 'README.md is out of date: python tools/make_readme.py')
    (root/'README.md').write_text(readme, encoding='utf-8')
