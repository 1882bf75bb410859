"""Check (and fix where it is safe) what breaks a notebook under nbdev's documentation processing.

nbdev renders a notebook with its processors (`nbdev.processors.FilterDefaults`). Three things go
wrong there, and this script finds them in every notebook (or in the ones named):

1. **Imports mixed with other code.** To render `show_doc`, nbdev executes every exported cell,
   every `show_doc` cell and *every cell that contains an import*, and nothing else. A cell that
   imports a module and then uses a variable of an earlier (unexecuted) cell fails there. Fix:
   the cell's top-level import lines move into their own cell just before it (with the same
   `#|` directives, so `hide`, `gpu` and `slow` cells stay what they were). Imports nested in a
   `def`, `with`, `try`, ... are not moved: those cells are listed for a person to fix.
2. **The introduction in the title cell.** nbdev keeps only the title and the first `>` line of
   a notebook's first markdown cell. Fix: a `>` block over several lines becomes one line, and
   everything after it moves into a new markdown cell just after the title cell.
3. **Public names without documentation.** nbdev adds a `show_doc` after each `#| export` cell
   for the functions and classes defined at its top level (unless the notebook already has one).
   Everything else that a module exports and that is a function or a class needs an explicit
   `show_doc`: methods attached to a class after its definition (`@patch`, `@_method_of(C)`,
   `C.name = fn`), and public names defined in hidden or `exporti` cells or by assignment.
   Fix: a `show_doc(...)` cell is inserted right after the cell that defines the name.

Usage (from the repository root; the project's virtual environment, with the package installed):

    python tools/fix_notebooks.py                 # check and fix every notebook under nbs/
    python tools/fix_notebooks.py --check         # only list the offenders; exit 1 if any
    python tools/fix_notebooks.py --render        # also run nbdev's processors on each notebook
    python tools/fix_notebooks.py nbs/07_mask.ipynb nbs/models/12_adapters.ipynb

Running it twice changes nothing the second time. Run `nbdev_clean` afterwards, as before any commit.
"""
from __future__ import annotations
import argparse, ast, importlib, inspect, json, os, re, secrets, sys, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(r'^\s*#\|\s*(.*?)\s*$')
_EXPORT = {'export', 'exports', 'exporti'}


# ---------------------------------------------------------------- notebook input/output
def read_nb(path:Path)->dict: return json.loads(path.read_text(encoding='utf-8'))

def src(cell)->str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def write_nb(nb:dict, path:Path, as_lists:dict, default:bool):
    "Write as nbdev's cleaner does (sorted keys, indent 1), each cell's source in its former style (one string or a list of lines)."
    for c in nb['cells']:
        s = src(c)
        c['source'] = s.splitlines(keepends=True) if as_lists.get(c.get('id'), default) else s
    text = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n'
    if path.read_text(encoding='utf-8') != text: path.write_text(text, encoding='utf-8')

def new_cell(cell_type:str, source:str)->dict:
    c = {'cell_type': cell_type, 'id': secrets.token_hex(4), 'metadata': {}, 'source': source}
    if cell_type == 'code': c.update(execution_count=None, outputs=[])
    return c

def directives(source:str)->tuple[list[str], list[str]]:
    "The leading `#|` lines of a cell (blank lines between them allowed) and the rest."
    lines = source.split('\n')
    k = 0
    while k < len(lines) and (_DIRECTIVE.match(lines[k]) or not lines[k].strip()): k += 1
    dirs = [l for l in lines[:k] if l.strip()]
    return dirs, lines[k:]

def directive_names(source:str)->set[str]:
    return {_DIRECTIVE.match(l).group(1).split()[0].rstrip(':') for l in directives(source)[0] if _DIRECTIVE.match(l).group(1)}

def is_python(cell)->bool:
    s = src(cell)
    return cell['cell_type'] == 'code' and s.strip()[:1] not in ('%', '!') and not re.search(r'^\s*%%', s, re.M)

def parse(source:str):
    try: return ast.parse(source)
    except SyntaxError: return None   # magics (`!cmd`, `x = !cmd`): nbdev does not evaluate these either


# ---------------------------------------------------------------- 1. imports mixed with code
_IMPORTS = (ast.Import, ast.ImportFrom)

def mixed_imports(cell)->str|None:
    """None if the cell is fine under nbdev's `show_doc` run; else 'fixable' (top-level imports that can
    move out) or 'manual' (an import nested in other code, or sharing a line with other code)."""
    if not is_python(cell): return None
    s = src(cell)
    names = directive_names(s)
    if names & _EXPORT or 'eval' in names: return None     # exported cells run anyway; eval: false never runs
    tree = parse(s)
    if tree is None or not any(isinstance(n, _IMPORTS) for n in ast.walk(tree)): return None
    others = [n for n in tree.body if not isinstance(n, _IMPORTS)]
    if not others: return None
    if any(isinstance(n, _IMPORTS) for o in others for n in ast.walk(o)): return 'manual'
    imp_lines = {l for n in tree.body if isinstance(n, _IMPORTS) for l in range(n.lineno, n.end_lineno + 1)}
    if any(l in imp_lines for n in others for l in range(n.lineno, n.end_lineno + 1)): return 'manual'
    return 'fixable'

def split_imports(cell)->tuple[dict, dict]:
    "A fixable cell as (imports cell, rest cell): same directives on both, import lines moved to the first."
    s = src(cell)
    tree = parse(s)
    lines = s.split('\n')
    imp_lines = sorted({l for n in tree.body if isinstance(n, _IMPORTS) for l in range(n.lineno, n.end_lineno + 1)})
    dirs, _ = directives(s)
    imports = '\n'.join(dirs + [lines[l - 1] for l in imp_lines])
    rest = [l for i, l in enumerate(lines, 1) if i not in imp_lines]
    d, body = directives('\n'.join(rest))
    while body and not body[0].strip(): body.pop(0)
    first = new_cell('code', imports)
    cell = dict(cell, source='\n'.join(dirs + body).rstrip('\n'))
    return first, cell


# ---------------------------------------------------------------- 2. the introduction
def intro_problem(nb:dict)->str|None:
    "None if the first cell is just `# title` and one `>` line; else what is wrong."
    if not nb['cells'] or nb['cells'][0]['cell_type'] != 'markdown': return 'manual: the first cell is not a markdown title cell'
    lines = [l for l in src(nb['cells'][0]).split('\n') if l.strip()]
    if not lines or not re.match(r'^#\s+\S', lines[0]): return 'manual: the first cell does not start with a `# title` line'
    if len(lines) == 1: return None
    if len(lines) == 2 and lines[1].startswith('> '): return None
    return 'fixable'

def split_intro(nb:dict):
    "Title and a one-line `>` summary stay in the first cell; the rest goes to a new markdown cell after it."
    lines = src(nb['cells'][0]).split('\n')
    k = 1
    while k < len(lines) and not lines[k].strip(): k += 1
    quote = []
    while k < len(lines) and lines[k].startswith('>'):
        quote.append(lines[k][1:].strip()); k += 1
    head = [lines[0]] + (['', '> ' + ' '.join(q for q in quote if q)] if quote else [])
    rest = '\n'.join(lines[k:]).strip('\n')
    nb['cells'][0] = dict(nb['cells'][0], source='\n'.join(head))
    if rest: nb['cells'].insert(1, new_cell('markdown', rest))


# ---------------------------------------------------------------- 3. show_doc for every public name
_SHOWDOC = re.compile(r'^\s*show_doc\(\s*([\w.]+)', re.M)
_PATCHERS = {'patch', '_method_of', 'patch_to'}

def _decorator_target(dec)->str|None:
    "The class a method is attached to by `@patch`-like decorators (`@_method_of(C)`, `@patch_to(C)`); '' for `@patch`."
    f = dec.func if isinstance(dec, ast.Call) else dec
    name = f.id if isinstance(f, ast.Name) else getattr(f, 'attr', None)
    if name not in _PATCHERS: return None
    if isinstance(dec, ast.Call) and dec.args and isinstance(dec.args[0], ast.Name): return dec.args[0].id
    return ''

def needed_docs(nb:dict, module)->list[tuple[int, str]]:
    "(index of the defining cell, name to `show_doc`) for every public function/class/method nbdev leaves undocumented."
    shown = {m.group(1) for c in nb['cells'] if c['cell_type'] == 'code' for m in _SHOWDOC.finditer(src(c))}
    public = set(getattr(module, '__all__', []))
    auto, defined_at, want = set(), {}, []
    for i, c in enumerate(nb['cells']):
        if not is_python(c): continue
        names = directive_names(src(c))
        if not names & _EXPORT: continue
        tree = parse(src(c))
        if tree is None: continue
        visible = 'hide' not in names and names & {'export', 'exports'}
        for n in tree.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined_at.setdefault(n.name, i)
                if visible and (n.name[0] != '_' or n.name[:2] == '__'): auto.add(n.name)
                for dec in getattr(n, 'decorator_list', []):
                    cls = _decorator_target(dec)
                    if cls is None: continue
                    if cls == '' and n.args.args and isinstance(n.args.args[0].annotation, ast.Name):
                        cls = n.args.args[0].annotation.id
                    if cls: want.append((i, f"{cls}.{n.name.lstrip('_')}"))
            elif isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name): defined_at.setdefault(t.id, i)
                    # `C.name = _private_fn`: a method under a public name that no automatic show_doc covers
                    if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and isinstance(n.value, ast.Name)
                            and not t.attr.startswith('_') and n.value.id.startswith('_')):
                        want.append((i, f"{t.value.id}.{t.attr}"))
    for name in sorted(public - auto):
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue       # constants: no show_doc
        if getattr(obj, '__module__', module.__name__) != module.__name__: continue  # documented where it is defined
        if name in defined_at: want.append((defined_at[name], name))
    return [(i, n) for i, n in dict.fromkeys(want) if n not in shown and n.split('.')[0] not in ('',)]

def add_docs(nb:dict, needed:list[tuple[int, str]]):
    for i, name in sorted(needed, key=lambda x: -x[0]):
        nb['cells'].insert(i + 1, new_cell('code', f'show_doc({name})'))


# ---------------------------------------------------------------- nbdev's own processing, as a check
def render(path:Path)->tuple[str|None, list[str]]:
    "Run nbdev's documentation processors on the notebook; (error or None, nbdev's warnings)."
    from execnb.nbio import read_nb as nbdev_read
    from nbdev.processors import FilterDefaults
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            try: FilterDefaults()(nbdev_read(path)); err = None
            except Exception as e: err = f"{e}" + (f" <- {type(e.__cause__).__name__}: {e.__cause__}" if e.__cause__ else '')
        return err, [str(x.message).split('\n---')[0] + ': ' + str(x.message).split('---\n')[1][:80].replace('\n', ' | ')
                     for x in w if 'imports and other code' in str(x.message)]
    finally: os.chdir(here)


# ---------------------------------------------------------------- driver
def module_of(nb:dict):
    for c in nb['cells']:
        m = re.search(r'^\s*#\|\s*default_exp\s+(\S+)', src(c), re.M) if c['cell_type'] == 'code' else None
        if m: return importlib.import_module(f"conformal_superres.{m.group(1)}")
    return None

def process(path:Path, fix:bool)->list[str]:
    nb = read_nb(path)
    as_lists = {c.get('id'): isinstance(c['source'], list) for c in nb['cells']}
    default = sum(as_lists.values()) * 2 > len(nb['cells'])   # new cells: as most cells of the notebook
    report = []
    p = intro_problem(nb)
    if p:
        report.append(f"introduction in the title cell ({p})")
        if fix and p == 'fixable': split_intro(nb)
    out = []
    for i, c in enumerate(nb['cells']):
        m = mixed_imports(c)
        if m: report.append(f"cell {i}: imports mixed with other code ({m}): {src(c).strip().splitlines()[0][:70]!r}")
        if fix and m == 'fixable': out.extend(split_imports(c))
        else: out.append(c)
    nb['cells'] = out
    mod = module_of(nb)
    if mod is not None:
        need = needed_docs(nb, mod)
        for i, n in need: report.append(f"no show_doc for {n} (defined in cell {i})")
        if fix: add_docs(nb, need)
    if fix: write_nb(nb, path, as_lists, default)
    return report

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('paths', nargs='*', help='notebooks (default: every notebook under nbs/)')
    ap.add_argument('--check', action='store_true', help='only report; exit 1 when something is wrong')
    ap.add_argument('--render', action='store_true', help="also run nbdev's documentation processors on each notebook")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    paths = [Path(p).resolve() for p in a.paths] or sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    bad = 0
    for p in paths:
        rel = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        rep = process(p, fix=not a.check)
        if not a.check:   # what is left after fixing
            left = process(p, fix=False)
            fixed = len(rep) - len(left)
            if rep: print(f"{rel}: fixed {fixed} of {len(rep)} problem(s)")
            rep = left
        for r in rep: print(f"  {rel}: {r}")
        if a.render:
            err, warns = render(p)
            for w in warns: print(f"  {rel}: nbdev warns: {w}")
            if err: print(f"  {rel}: FAILS under nbdev's processing: {err[:600]}")
            rep = rep + warns + ([err] if err else [])
        bad += bool(rep)
    print(f"{len(paths)} notebooks, {bad} with problems left" + ('' if a.render else ' (rendering not checked: --render)'))
    return 1 if bad else 0

if __name__ == '__main__': sys.exit(main())
