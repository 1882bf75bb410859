"""Execute notebooks and store their outputs, so that every example shows its result to a reader.

Each notebook runs the way `nbdev_test` runs it (execnb's `CaptureShell`, in the notebook's own
folder, `IN_TEST` set), top to bottom, and stops at the first error: the error is printed with
its cell and the notebook is left unchanged, and the script exits with status 1.

Cells flagged with one of the test flags of `settings.ini` (`tst_flags`, here `gpu slow`) or with
`#| eval: false` are not executed, and keep the outputs they had: a figure a slow or GPU cell
produced once, where it could run, stays in the notebook. Pass `--run-flag slow` to execute the
`slow` cells too (they then get fresh outputs). Markdown cells and untouched outputs are not
rewritten. Stored text has the repository's own path removed (paths read relative to it) and
figures wider or taller than `--max-png-side` pixels are scaled down (and photographs that stay
large are stored with a 256-colour palette), so that a notebook stays under a megabyte.
`--tidy-only` applies these storage rules to the outputs already stored, executing nothing, and
`--check` only says which notebooks it would change (CI runs it). Temporary folders, IPython's frame
file names and object addresses are written as `<tmp>`, `<cell>` and `0x...`. Run `nbdev_clean` afterwards, as before any commit (the project keeps outputs:
`clear_all = False`).

Usage, from the repository root with the project's virtual environment:

    python tools/run_notebooks.py                         # the chapters, the index and the tutorials
    python tools/run_notebooks.py nbs/07_mask.ipynb nbs/tutorials/01_quickstart.ipynb
    python tools/run_notebooks.py --run-flag slow nbs/experiments/19_map_pool.ipynb
"""
from __future__ import annotations
import argparse, configparser, json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def test_flags()->set[str]:
    "The `tst_flags` of settings.ini: cells carrying them are skipped by `nbdev_test` and here."
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').split())

def _shrink_png(b64:str, max_side:int)->str:
    "A stored PNG at most `max_side` pixels on its longer side (Lanczos), re-encoded when that makes it smaller."
    import base64, io
    from PIL import Image
    raw = base64.b64decode(b64)
    im = Image.open(io.BytesIO(raw))
    if im.mode == 'P' and max(im.size) <= max_side: return b64   # stored by this rule already: leave it as it is
    if max(im.size) > max_side:
        f = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.LANCZOS)
    buf = io.BytesIO(); im.save(buf, 'PNG', optimize=True)
    if buf.tell() > 400_000:   # still large (photographs): a 256-colour palette keeps them legible at a third of the size
        buf = io.BytesIO(); im.convert('RGB').quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode('ascii') + '\n' if len(buf.getvalue()) < len(raw) else b64

def _as_shown(text:str)->list[str]:
    """Stream text as a terminal leaves it, as lines: a line rewritten with carriage returns (a progress bar)
    keeps its last state, and one that ends cleared is dropped."""
    pieces, out = text.split('\n'), []
    for k, body in enumerate(pieces):
        end = '\n' if k < len(pieces) - 1 else ''
        if '\r' not in body:
            if body or end: out.append(body + end)
            continue
        shown = ''
        for part in body.split('\r'): shown = part + shown[len(part):]   # each return writes over the line from its start
        if shown.strip(): out.append(shown.rstrip() + end)
    return out

import re as _re
_SCRUB = [  # what changes from run to run without saying anything to a reader
    (_re.compile(r'(?:/tmp|/var/folders/[\w/]+?/T)/(?:tmp|pytest-of-\w+/)?[\w.-]*(?=[/\s\'")\]]|$)'), '<tmp>'),  # temporary folders
    (_re.compile(r'/tmp/ipykernel_\d+/\d+\.py'), '<cell>'),                    # IPython's frame files
    (_re.compile(r'<ipython-input-\d+-[0-9a-f]+>'), '<cell>'),
    (_re.compile(r'\bat 0x[0-9a-f]{6,16}\b'), 'at 0x...'),                       # object addresses in reprs
]
def _scrub(x:str)->str:
    for rx, rep in _SCRUB: x = rx.sub(rep, x)
    return x

def _tidy(outs:list, max_side:int)->list:
    """Outputs as stored: no execution counts, the repository's path written relative to it, progress bars
    at their final state, PNGs capped in size."""
    root = str(ROOT) + os.sep
    def clean(x:str)->str: return _scrub(x.replace(root, ''))
    def text(t): return [clean(x) for x in t] if isinstance(t, list) else clean(t)
    for o in outs:
        if o.get('output_type') == 'execute_result': o['execution_count'] = None
        if o.get('output_type') == 'stream' and '\r' in ''.join(o.get('text', [])):
            o['text'] = _as_shown(''.join(o['text']))
        if 'text' in o: o['text'] = text(o['text'])
        data = o.get('data', {})
        for k in ('text/plain', 'text/markdown', 'text/html'):
            if k in data: data[k] = text(data[k])
        if 'image/png' in data:
            png = ''.join(data['image/png']) if isinstance(data['image/png'], list) else data['image/png']
            data['image/png'] = _shrink_png(png, max_side)
    return outs

def run_notebook(path:Path, skip_flags:set[str], max_side:int=1400)->tuple[bool, float, int]:
    "Execute `path` and write the outputs of the executed cells into it; (ok, seconds, cells run)."
    from execnb.nbio import read_nb
    from fastcore.basics import AttrDict
    from execnb.shell import CaptureShell
    from nbdev.process import extract_directives
    from fastcore.xtras import working_directory
    os.environ['IN_TEST'] = '1'
    nb = read_nb(path)
    ran = []
    def skip(cell):
        if cell.cell_type != 'code' or not cell.source.strip(): return True
        d = extract_directives(AttrDict(source=cell.source), remove=False) or {}
        if d.get('eval:', [''])[0].lower() == 'false' or skip_flags & d.keys(): return True
        cell.outputs = []   # CaptureShell keeps old outputs when a cell prints nothing: start clean
        ran.append(cell.idx_)
        return False
    start = time.time()
    k = CaptureShell(path)
    try:
        with working_directory(path.parent): k.run_all(nb, exc_stop=True, preproc=skip)
    except BaseException as e:
        if getattr(k, '_cell_idx', None): sys.stderr.write(k.prettytb(fname=path) + '\n')
        else: sys.stderr.write(f"{path}: {type(e).__name__}: {e}\n")
        return False, time.time() - start, len(ran)
    seconds = time.time() - start
    raw = json.loads(path.read_text(encoding='utf-8'))
    for i in ran:
        outs = json.loads(json.dumps(nb.cells[i].get('outputs', [])))   # AttrDicts -> plain JSON
        raw['cells'][i]['outputs'] = _tidy(outs, max_side)
        raw['cells'][i]['execution_count'] = None
    text = json.dumps(raw, sort_keys=True, indent=1, ensure_ascii=False) + '\n'
    if path.read_text(encoding='utf-8') != text: path.write_text(text, encoding='utf-8')
    return True, seconds, len(ran)

def tidy_notebook(path:Path, max_side:int=1400):
    "Apply the storage rules (`_tidy`) to the outputs already in `path`, without executing anything."
    raw = json.loads(path.read_text(encoding='utf-8'))
    for c in raw['cells']:
        if c.get('outputs'): c['outputs'] = _tidy(c['outputs'], max_side)
    text = json.dumps(raw, sort_keys=True, indent=1, ensure_ascii=False) + '\n'
    if path.read_text(encoding='utf-8') != text: path.write_text(text, encoding='utf-8')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('paths', nargs='*', help='notebooks (default: the chapters, the index and the tutorials)')
    ap.add_argument('--run-flag', action='append', default=[], help='a test flag whose cells are executed too (repeatable)')
    ap.add_argument('--max-png-side', type=int, default=1400, help='stored figures larger than this (pixels) are scaled down')
    ap.add_argument('--tidy-only', action='store_true', help='execute nothing: only apply the storage rules to the stored outputs')
    ap.add_argument('--check', action='store_true', help='change nothing: exit 1 when --tidy-only would change a notebook')
    ap.add_argument('--keep-going', action='store_true', help='run the other notebooks after one fails (exit status still 1)')
    a = ap.parse_args(argv)
    os.environ.setdefault('MPLBACKEND', 'Agg')
    sys.path.insert(0, str(ROOT))
    skip_flags = test_flags() - set(a.run_flag)
    paths = [Path(p).resolve() for p in a.paths] or sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    if a.check:  # CI: a committed notebook must already be as the tidy step leaves it
        import copy
        stale = []
        for p in paths:
            raw = json.loads(p.read_text(encoding='utf-8'))
            before = [c.get('outputs') for c in raw['cells']]
            after = [_tidy(copy.deepcopy(o), a.max_png_side) if o else o for o in before]
            if before != after: stale.append(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p))
        if stale: print("stored outputs not tidy (run: python tools/run_notebooks.py --tidy-only, then nbdev_clean):\n  "
                        + '\n  '.join(stale), file=sys.stderr)
        return 1 if stale else 0
    if a.tidy_only:
        for p in paths: tidy_notebook(p, a.max_png_side)
        return 0
    failed = []
    for p in paths:
        rel = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        ok, s, n = run_notebook(p, skip_flags, a.max_png_side)
        print(f"{'ok    ' if ok else 'FAILED'} {s:7.1f} s  {n:3d} cells  {rel}", flush=True)
        if not ok:
            failed.append(str(rel))
            if not a.keep_going: break
    if failed:
        print(f"failed: {' '.join(failed)} (outputs of a failed notebook are not written)", file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__': sys.exit(main())
