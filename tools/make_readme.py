"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not used here).

Markdown cells are copied; code cells become ```python blocks, with nbdev directives removed;
cells marked `#| hide` are left out, cells marked `#| echo: false` show only their outputs. Stored
outputs follow their cell: text as a plain block, Markdown (a table) as Markdown, and a figure as
a PNG file written to `nbs/images/index_<n>.png` (n: the cell's number) that the README shows.
Run from the repository root: `python tools/make_readme.py` (`--check`: fail when README.md or one
of those pictures is out of date)."""
import base64, json, re, sys
from pathlib import Path

def cell_text(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def convert(nb_path:Path)->tuple[str, dict]:
    "The README's text, and the pictures it shows ({path relative to the repository: PNG bytes})."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    parts, pictures = [], {}
    for i, cell in enumerate(nb['cells']):
        src = cell_text(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(src.strip()); continue
        if cell['cell_type'] != 'code': continue
        lines = src.split('\n')
        directives = [l for l in lines if re.match(r'^#\|', l)]
        if any(re.match(r'^#\|\s*(hide|exporti?\b)', d) for d in directives): continue
        echo = not any(re.match(r'^#\|\s*echo:\s*false', d) for d in directives)
        code = '\n'.join(l for l in lines if not re.match(r'^#\|', l)).strip()
        if code and echo: parts.append(f"```python\n{code}\n```")
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if 'image/png' in data:
                name = f'nbs/images/index_{i}.png'
                pictures[name] = base64.b64decode(''.join(data['image/png']))
                nxt = next((cell_text(c) for c in nb['cells'][i + 1:] if c['cell_type'] == 'markdown'), '')
                alt = re.split(r'[:.]\s', nxt.strip(), maxsplit=1)[0].replace('[', '').replace(']', '') or 'figure'  # its caption
                parts.append(f"![{alt}]({name})"); continue
            if 'text/markdown' in data:
                parts.append(''.join(data['text/markdown']).strip()); continue
            text = out.get('text') or data.get('text/plain')
            if text:
                text = ''.join(text) if isinstance(text, list) else text
                parts.append(f"```\n{text.rstrip()}\n```")
    return '\n\n'.join(p for p in parts if p) + '\n', pictures

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    readme, pictures = convert(root/'nbs'/'index.ipynb')
    if '--check' in sys.argv:
        stale = [n for n, b in pictures.items() if not (root/n).exists() or (root/n).read_bytes() != b]
        if (root/'README.md').read_text(encoding='utf-8') != readme: stale.append('README.md')
        sys.exit(0 if not stale else f"out of date: {', '.join(stale)}: python tools/make_readme.py")
    for n, b in pictures.items():
        if not (root/n).exists() or (root/n).read_bytes() != b: (root/n).write_bytes(b)
    (root/'README.md').write_text(readme, encoding='utf-8')
