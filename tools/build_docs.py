"""Build the documentation site into `_docs/` without Quarto and without the network.

Steps (run from anywhere; `bash tools/build_docs.sh` is the usual entry point):
1. every notebook of `nbs/` (chapters, `index.ipynb`, and `nbs/tutorials/**`) goes through nbdev 2's
   own processors (`FilterDefaults`: front matter, hidden and exported cells, `show_doc` rendered by
   running the cells that define what it documents, never a cell flagged `gpu` or `slow`), one fresh
   process per notebook;
2. the processed notebooks are turned into what Sphinx + myst-nb read: the front matter becomes the
   page title, Quarto-only markup (`#| echo: false`, `#| output: ...`, `{target=...}` link
   attributes) becomes cell tags or disappears, widget views give way to their stored pictures;
3. Sphinx builds HTML with `-W` (any warning fails the build), the furo theme and a MathJax served
   from the site itself (`sphinx-mathjax-offline`); notebooks are not executed: the outputs stored
   in them are shown (nbdev_test runs every notebook in CI);
4. links to the project's own site (`doc_host`/`doc_baseurl`, written by nbdev) become relative.

A notebook whose cells nbdev cannot run while it renders `show_doc` (typically a cell that mixes an
import with other code, see nbdev's FAQ) fails the build and is named in a list, with the cell and
the error. `tools/docs_known_failures.txt` names the notebooks allowed to fail for now: they are
rendered by running only their exported cells and their `show_doc` cells, and the build fails as
soon as one of them processes cleanly (so that it leaves the list).

Options: `--keep-going` renders every notebook it can and reports all failures at the end;
`--only NAME ...` processes only the named notebooks (a quick look at one page; the site is partial)."""
from __future__ import annotations
import argparse, configparser, html, inspect, json, multiprocessing as mp, os, re, shutil, subprocess, sys, time, traceback, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, OUT, STAGE = ROOT/'nbs', ROOT/'_docs', ROOT/'.build'/'docs-src'
KNOWN = Path(__file__).resolve().parent/'docs_known_failures.txt'

def settings()->dict:
    cp = configparser.ConfigParser(delimiters=['=']); cp.read(ROOT/'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])

def notebooks()->list[Path]:
    "Every notebook of the site: the chapters and index in `nbs/`, then the tutorials (any depth)."
    skip = lambda p: any(part.startswith(('.', '_')) for part in p.relative_to(NBS).parts)
    top = sorted(p for p in NBS.rglob('*.ipynb') if not skip(p) and p.relative_to(NBS).parts[0] != 'tutorials')
    tut = sorted(p for p in (NBS/'tutorials').rglob('*.ipynb') if not skip(p)) if (NBS/'tutorials').exists() else []
    return top + tut

def known_failures()->set[str]:
    if not KNOWN.exists(): return set()
    return {l.split('#')[0].strip() for l in KNOWN.read_text(encoding='utf-8').splitlines()} - {''}

# ---------------------------------------------------------------- 1. nbdev's processing (one process per notebook)

def _procs(fallback:bool, flags:set):
    """nbdev's default processors, whose show_doc executor never runs cells flagged `gpu`/`slow` (settings.ini's tst_flags);
    in fallback mode it runs only exported cells and show_doc cells."""
    from nbdev.processors import FilterDefaults, exec_show_docs
    class exec_unflagged(exec_show_docs):
        def __call__(self, cell):
            d = cell.directives_ if cell.cell_type == 'code' else {}
            if d.keys() & flags: return
            if fallback and not (d.keys() & {'export', 'exports', 'exporti', 'exec_doc'} or
                                 (cell.cell_type == 'code' and re.search(r'^show_doc', cell.source, re.MULTILINE))): return
            super().__call__(cell)
    return [exec_unflagged if p is exec_show_docs else p for p in FilterDefaults().procs()]

def _process_one(args)->dict:
    "Process one notebook with nbdev's processors, in the notebook's folder; returns the outcome (picklable)."
    src, dst, fallback = args
    os.environ['IN_TEST'] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg')
    os.chdir(Path(src).parent)
    from execnb.nbio import read_nb, write_nb
    from nbdev.process import NBProcessor
    out = {'src': src, 'ok': False, 'fallback': fallback, 'error': '', 'mixed': []}
    t0 = time.time()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try:
            nb = read_nb(src)
            NBProcessor(nb=nb, procs=_procs(fallback, set(settings().get('tst_flags', '').split()))).process()
            write_nb(nb, dst); out['ok'] = True
        except Exception as e:
            cause = e.__cause__ or e
            msg = str(e).strip()
            first = msg.splitlines()[0] if msg else type(e).__name__
            cell = '\n'.join(msg.splitlines()[1:4])
            out['error'] = f"{first}\n      {type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}" + \
                           (f"\n      cell starts: {cell!r}" if cell else '')
            out['trace'] = ''.join(traceback.format_exception(e))
    out['mixed'] = [str(x.message).split('---')[1].strip().splitlines()[0] for x in w
                    if 'imports and other code' in str(x.message) and '---' in str(x.message)]
    out['seconds'] = time.time() - t0
    return out

# ---------------------------------------------------------------- 2. processed notebook -> myst-nb notebook

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_attr = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')           # [text](url){target="_blank" ...}
_re_showdoc_head = re.compile(r'^(#{2,4})\s+(\S+)\s*$', re.MULTILINE)
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'

def _src(x)->str: return ''.join(x) if isinstance(x, list) else (x or '')

def _split_directives(source:str)->tuple[dict, str]:
    "The `#| key: value` lines at the top of a code cell, and the code without them."
    lines, d = source.split('\n'), {}
    i = 0
    while i < len(lines) and (m := _re_directive.match(lines[i])):
        d[m.group(1).lower()] = m.group(2).strip().strip('"\'').lower(); i += 1
    return d, '\n'.join(lines[i:]).strip('\n')

def _fix_markdown(md:str, site:str)->str:
    "Quarto link attributes removed; links to this project's site kept absolute (made relative after the build)."
    md = _re_attr.sub(r'\1', md)
    # pages drop the notebooks' number prefixes (see `page_name`): links between notebooks follow them
    return re.sub(r'(\]\((?:[^)#\s]*/)?)\d+[a-z]?_([^)/#\s]*\.ipynb)', r'\1\2', md)

def _showdoc_md(md:str)->str:
    "nbdev's show_doc markdown: no leading rule (docutils refuses a section that starts with one), an anchor named as nbdev names it."
    md = re.sub(r'^\s*---\s*\n', '', md, count=1)
    def head(m):
        name = m.group(2); slug = re.sub(r'[^\w\- ]', '', name.lower()).replace(' ', '-')
        span = '' if slug == name.lower() else f'<span id="{html.escape(name.lower())}"></span>\n\n'  # heading anchors drop dots
        return f'{span}{m.group(1)} {name}'
    return _re_showdoc_head.sub(head, md)

_re_source = re.compile(r'\[source\]\(([^)\s]*?/(?:blob|tree)/[^/)]+/([^)#\s]+)\.py(?:#L\d+)?)\)')

def _resolve(name:str, module:str):
    "The object that `show_doc` documented: `name` (maybe dotted, `Class.method`) looked up in `module`."
    from importlib import import_module
    obj = import_module(module)
    for part in name.split('.'): obj = getattr(obj, part)
    return obj

def _md_escape(text:str)->str:
    "Docstring text for Markdown: a lone `*` after a word (`r*`, `t*`) is a star, not italics; code and math untouched."
    def fix(part):
        if re.search(r'(?<![\w*\\])\*(?=\w)', part): return part  # a real *italic* opener: leave the text alone
        return re.sub(r'(?<=\w)\*(?!\*)', r'\\*', part)
    return ''.join(part if i % 2 else fix(part) for i, part in enumerate(re.split(r'(`[^`]*`|\$[^$]+\$)', text)))

def _anno(a)->str:
    if a is inspect.Parameter.empty or a is type(None): return ''
    return a if isinstance(a, str) else inspect.formatannotation(a)

def _default(v)->str:
    r = repr(v)
    return r if len(r) <= 40 and '<' not in r and '\n' not in r else '...'

def _signature(obj)->tuple[str, list]:
    "The argument list (names and defaults only; the types go to the table) and the parameters."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return '', []
    params = [q for q in sig.parameters.values() if q.name not in ('self', 'cls') or q.kind not in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    if params and inspect.isclass(obj) is False and params[0].name in ('self', 'cls'): params = params[1:]
    out, star, slash = [], False, False
    for q in params:
        if q.kind == q.VAR_POSITIONAL: out.append(f'*{q.name}'); star = True; continue
        if q.kind == q.VAR_KEYWORD: out.append(f'**{q.name}'); continue
        if q.kind == q.KEYWORD_ONLY and not star: out.append('*'); star = True
        if slash is False and q.kind != q.POSITIONAL_ONLY and any(x.kind == x.POSITIONAL_ONLY for x in params): out.append('/'); slash = True
        out.append(q.name + ('' if q.default is q.empty else f'={_default(q.default)}'))
    ret = _anno(sig.return_annotation)
    return '(' + ', '.join(out) + ')' + (f' -> {ret}' if ret and not inspect.isclass(obj) else ''), params

def _cell(x:str)->str: return x.replace('|', '\\|').replace('\n', ' ').strip()

def _param_table(obj, params)->str:
    "docments' argument comments as a table: parameter, type, default, what it is."
    if not params: return ''
    try:
        from fastcore.docments import docments
        docs = docments(obj, full=True)
    except Exception: docs = {}
    rows, any_doc = [], False
    for q in params:
        d = docs.get(q.name) or {}
        text = d.get('docment') or ''
        any_doc |= bool(text)
        name = {q.VAR_POSITIONAL: '*', q.VAR_KEYWORD: '**'}.get(q.kind, '') + q.name
        anno = _anno(q.annotation)
        rows.append(f"| `{name}` | {f'`{_cell(anno)}`' if anno else ''} | "
                    f"{'' if q.default is q.empty else f'`{_cell(_default(q.default))}`'} | {_md_escape(_cell(text))} |")
    ret = docs.get('return') or {}
    if ret.get('docment'):
        ra = _cell(_anno(ret.get('anno', inspect.Parameter.empty)))
        rows.append(f"| **returns** | {f'`{ra}`' if ra else ''} | | {_md_escape(_cell(ret['docment']))} |")
    head = '| Parameter | Type | Default | Details |\n|:--|:--|:--|:--|\n'
    return head + '\n'.join(rows) + '\n'

def _object_kind(owner, name:str, obj)->tuple[str, list[str]]:
    "The Sphinx directive for an object, and its options."
    attr = inspect.getattr_static(owner, name.split('.')[-1], None) if owner is not None and not inspect.ismodule(owner) else None
    if inspect.isclass(obj): return 'class', []
    if isinstance(attr, property) or isinstance(obj, property): return 'property', []
    if owner is not None and inspect.isclass(owner):
        if isinstance(attr, staticmethod): return 'method', [':staticmethod:']
        if isinstance(attr, classmethod): return 'method', [':classmethod:']
        return ('method', []) if callable(obj) else ('attribute', [])
    return ('function', []) if callable(obj) else ('data', [])

def _unwrap(v): return v.__func__ if isinstance(v, (classmethod, staticmethod)) else v.fget if isinstance(v, property) else v

def _method_owner(obj, module:str, name:str|None=None)->str|None:
    "`Class.name` when `obj` is also an attribute of a class of `module` (attached after the class was defined)."
    from importlib import import_module
    m, target = import_module(module), _unwrap(obj)
    for cname, cls in vars(m).items():
        if not inspect.isclass(cls) or cls.__module__ != module: continue
        for k, v in vars(cls).items():
            u = _unwrap(v)   # fastcore's @patch attaches a copy of the function, named Class.name
            if v is obj or u is target or (k == name and getattr(u, '__qualname__', '') == f'{cname}.{k}'):
                return f'{cname}.{k}'

def render_showdoc(code:str, md:str, registered:set)->str|None:
    """nbdev's show_doc entry as a Sphinx object description (class, method, function: registered in the index,
    the search and objects.inv), with a table of parameters from the docments comments; None for a private name."""
    m = re.match(r'\s*show_doc\(\s*([\w.]+)', code)
    head = re.search(r'^#{2,4}\s+(\S+)\s*$', md, re.MULTILINE)
    src = _re_source.search(md)
    if not (m and head and src): return None
    name = head.group(1)
    if any(part.startswith('_') and not (part.startswith('__') and part.endswith('__')) for part in name.split('.')): return ''
    module = src.group(2).replace('/', '.')
    if module.endswith('.__init__'): module = module[:-9]
    try: obj = _resolve(name, module)
    except Exception: return None
    anchors = [name.lower()]
    if '.' not in name and (q := _method_owner(obj, module, name)):  # a method defined after its class: `calibrate` is `ConformalMask.calibrate`
        name = q; anchors.append(q.lower()); obj = _resolve(q, module)
    owner = _resolve(name.rsplit('.', 1)[0], module) if '.' in name else None
    kind, opts = _object_kind(owner, name, obj)
    target = obj.fget if isinstance(obj, property) else obj
    args, params = _signature(target) if kind in ('class', 'method', 'function') else ('', [])
    full = f'{module}.{name}'
    if full in registered: opts.append(':no-index:')
    registered.add(full)
    doc = inspect.getdoc(target) or ''
    if kind == 'class' and target.__init__.__doc__ and target.__doc__ != target.__init__.__doc__ and not doc: doc = inspect.getdoc(target.__init__) or ''
    body = [f'[source]({src.group(1)})', '', _md_escape(doc.strip())] if doc.strip() else [f'[source]({src.group(1)})']
    table = _param_table(target, params)
    if table: body += ['', table]
    spans = ''.join(f'<span id="{html.escape(a)}"></span>' for a in dict.fromkeys(anchors))
    return (f'{spans}\n\n````{{py:{kind}}} {name}{args}\n:module: {module}\n'
            + ''.join(o + '\n' for o in opts) + '\n' + '\n'.join(body).rstrip() + '\n````\n')

def cell_kind(code:str)->str:
    "'import' for a cell of imports only, 'test' for one of checks only (`test_*` calls, asserts), else 'code'."
    import ast
    try: body = ast.parse(code).body
    except SyntaxError: return 'code'
    if not body: return 'code'
    if all(isinstance(b, (ast.Import, ast.ImportFrom)) for b in body): return 'import'
    def check(b):
        if isinstance(b, ast.Assert): return True
        if isinstance(b, ast.Expr) and isinstance(b.value, ast.Call):
            f = b.value.func
            return (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else '').startswith('test_')
        if isinstance(b, ast.With): return all(check(x) for x in b.body)
        if isinstance(b, ast.For): return all(check(x) for x in b.body)
        return False
    return 'test' if all(check(b) for b in body) else 'code'

def convert(nb:dict, site:str, registered:set|None=None)->dict:
    "A notebook processed by nbdev, turned into one that myst-nb renders without Quarto."
    cells, title, tests_shown = [], None, 0
    for c in nb['cells']:
        src = _src(c.get('source'))
        if c['cell_type'] == 'raw':
            m = re.match(r'^---\s*\n(.*?)\n---\s*$', src.strip(), re.DOTALL)
            if m:  # nbdev's front matter: becomes the page's title and lead paragraph
                import yaml
                fm = yaml.safe_load(m.group(1)) or {}
                title = fm.get('title')
                md = f"# {title}\n" if title else ''
                if fm.get('description'): md += f"\n> {fm['description']}\n"
                if md: cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': md})
            continue
        if c['cell_type'] == 'markdown':
            if not src.strip() or src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': _fix_markdown(src, site)}); continue
        if c['cell_type'] != 'code': continue
        d, code = _split_directives(src)
        if d.get('include') == 'false': continue
        outputs = []
        for o in c.get('outputs', []):
            o = dict(o)
            if 'data' in o:
                data = dict(o['data'])
                if WIDGET_MIME in data: continue  # a live widget: its stored picture is in another output
                if 'text/markdown' in data:
                    md = _src(data['text/markdown'])
                    if code.lstrip().startswith('show_doc'):
                        r = render_showdoc(code, md, registered if registered is not None else set())
                        if r == '': continue  # a private name: not part of the documentation
                        md = r if r is not None else _showdoc_md(md)
                    data['text/markdown'] = _fix_markdown(md, site)
                o['data'] = data
            outputs.append(o)
        tags = []
        if d.get('echo') == 'false': tags.append('remove-input')
        if d.get('output') == 'false': outputs = []
        if not code.strip(): tags = ['remove-input'] if outputs else None
        elif not outputs and not tags:  # silent cells: imports leave the page, checks fold (the first stays open)
            kind = cell_kind(code)
            if kind == 'import': continue
            if kind == 'test':
                tests_shown += 1
                if tests_shown > 1: tags.append('hide-input')
        if tags is None: continue
        if 'remove-input' in tags and not outputs: continue
        cells.append({'cell_type': 'code', 'metadata': {'tags': tags} if tags else {}, 'source': code,
                      'outputs': outputs, 'execution_count': None})
    if title is None: raise ValueError("the notebook has no title: its first cell must be markdown '# Title' then '> summary'")
    for i, c in enumerate(cells): c['id'] = f'cell-{i}'
    md = {k: v for k, v in nb.get('metadata', {}).items() if k in ('kernelspec', 'language_info')}
    md.setdefault('kernelspec', {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'})
    return {'cells': cells, 'metadata': md, 'nbformat': 4, 'nbformat_minor': 5}

def page_name(nb_path:Path)->str:
    "The page nbdev gives a notebook: number prefix dropped (`02_fidelity` -> `fidelity`), folders kept."
    rel = nb_path.relative_to(NBS).with_suffix('')
    return str(rel.parent/re.sub(r'^\d+[a-z]?_', '', rel.name)) if rel.parent != Path('.') else re.sub(r'^\d+[a-z]?_', '', rel.name)

# ---------------------------------------------------------------- 3. Sphinx

def navigation(names:list[str])->list[tuple[str, list[str]]]:
    """The site's sections in the reader's order, from `nbs/sidebar.yml` (the same file Quarto reads): (caption, pages).
    Pages that the file does not list go to a section "Other chapters" before the last one (the internals)."""
    import yaml
    sb = yaml.safe_load((NBS/'sidebar.yml').read_text(encoding='utf-8')) if (NBS/'sidebar.yml').exists() else {}
    sections, seen = [], {'index'}
    for entry in ((sb or {}).get('website', {}).get('sidebar', {}).get('contents', []) or []):
        if isinstance(entry, dict) and 'section' in entry:
            pages = [page_name(NBS/e) for e in entry.get('contents', []) if isinstance(e, str)]
            pages = [q for q in pages if q in names and q not in seen]
            seen.update(pages)
            if pages: sections.append((entry['section'], pages))
    rest = [n for n in names if n not in seen]
    if rest:
        print(f"   not in nbs/sidebar.yml (shown under 'Other chapters'): {', '.join(rest)}")
        sections.insert(max(len(sections) - 1, 0), ('Other chapters', rest))
    return sections

def _front(nb:dict)->tuple[str, str]:
    "A converted page's title and summary line."
    first = _src(nb['cells'][0]['source']) if nb['cells'] else ''
    title = re.search(r'^# (.+)$', first, re.MULTILINE); summary = re.search(r'^> (.+)$', first, re.MULTILINE)
    return (title.group(1).strip() if title else ''), (summary.group(1).strip() if summary else '')

def tutorials_page(pages:dict, tutorials:list[str])->str:
    "The tutorials' index: each with its one line, how long it runs and what it needs (`nbs/tutorials/_about.yml`)."
    import yaml
    about_file = NBS/'tutorials'/'_about.yml'
    about = (yaml.safe_load(about_file.read_text(encoding='utf-8')) or {}) if about_file.exists() else {}
    rows = []
    for t in tutorials:
        title, summary = _front(pages[t])
        a = about.get(t.split('/', 1)[1], {}) or {}
        needs = '**needs a CUDA GPU** and the SinSR checkpoints' if a.get('gpu') else 'CPU only'
        when = a.get('time', '')
        rows.append(f"- [{title}]({t.split('/', 1)[1]}.ipynb): {summary} *{needs}" + (f"; {when}" if when else '') + ".*")
    return ("# Tutorials\n\nRead-and-run notebooks, in the order to read them (each is in `nbs/tutorials/` of the "
            "repository and opens in JupyterLab). The times are for a laptop-class CPU.\n\n" + '\n'.join(rows) +
            "\n\n```{toctree}\n:hidden:\n\n" + '\n'.join(t.split('/', 1)[1] for t in tutorials) + "\n```\n")

CONF = '''# generated by tools/build_docs.py
project = {title!r}
author = {author!r}
copyright = {copyright!r}
extensions = ['myst_nb', 'sphinx-mathjax-offline']
html_theme = 'furo'
html_title = {title!r}
html_static_path = ['_static']
html_css_files = ['site.css']
add_module_names = False           # `ConformalMask.calibrate`, not the module path before it
python_display_short_literal_types = True
nb_output_stderr = 'remove'        # warnings and progress bars are for the notebook, not the page
html_copy_source = False
html_show_sourcelink = False
exclude_patterns = ['_build', '**.ipynb_checkpoints']
nb_execution_mode = 'off'          # outputs stored in the notebooks are shown; nbdev_test runs the notebooks
nb_render_markdown_format = 'myst' # show_doc's markdown: tables, math
nb_ipywidgets_js = {{}}             # no widget manager from a CDN: widgets are shown by their stored pictures
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_heading_anchors = 3
suppress_warnings = ['myst.header']  # show_doc headings start at level 3 inside a chapter
mathjax3_config = {{'tex': {{'inlineMath': [['\\\\(', '\\\\)']], 'displayMath': [['\\\\[', '\\\\]']]}}}}
'''

CSS = """/* generated by tools/build_docs.py: code wraps instead of scrolling sideways; wider column for figures */
.highlight pre, .output pre, div.cell_output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
@media (min-width: 82em) { .content { width: 52em; } }
.cell_output img { max-width: 100%; height: auto; }
mjx-container[display="true"] { overflow-x: auto; max-width: 100%; }
dl.py > dt { overflow-wrap: anywhere; }
dl.py table.docutils { width: 100%; font-size: 0.9em; }
"""

def sphinx_sources(pages:dict[str, dict], s:dict, tutorials:list[str], chapters:list[str]):
    "Write the converted notebooks, the tutorials' index, the API index and conf.py into the staging folder."
    if STAGE.exists(): shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    sections = navigation(tutorials + chapters)
    order = [q for _, qs in sections for q in qs]
    tutorials = [t for t in order if t in tutorials]  # the sidebar's order
    for name, nb in pages.items():
        p = STAGE/f'{name}.ipynb'; p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(nb, indent=1), encoding='utf-8')
    if (NBS/'images').exists(): shutil.copytree(NBS/'images', STAGE/'images')
    (STAGE/'_static').mkdir(exist_ok=True)
    (STAGE/'_static'/'site.css').write_text(CSS, encoding='utf-8')
    if tutorials:
        (STAGE/'tutorials').mkdir(exist_ok=True)
        (STAGE/'tutorials'/'index.md').write_text(tutorials_page(pages, tutorials), encoding='utf-8')
    (STAGE/'api.md').write_text(api_page(s, chapters), encoding='utf-8')
    index = pages['index']
    toc = []
    for caption, qs in sections:
        entries = []
        for q in qs:  # the tutorials are reached through their index page, which lists them
            if q in tutorials:
                if 'tutorials/index' not in entries: entries.append('tutorials/index')
            else: entries.append(q)
        toc.append(f'```{{toctree}}\n:hidden:\n:caption: {caption}\n\n' + '\n'.join(entries) + '\n```')
    toc.append('```{toctree}\n:hidden:\n:caption: Reference\n\napi\ngenindex\n```')
    index['cells'].append({'cell_type': 'markdown', 'id': 'site-toctree', 'metadata': {}, 'source': '\n\n'.join(toc)})
    (STAGE/'index.ipynb').write_text(json.dumps(index, indent=1), encoding='utf-8')
    (STAGE/'conf.py').write_text(CONF.format(title=s.get('title', s['lib_name']), author=s.get('author', ''),
                                             copyright=s.get('copyright', '')), encoding='utf-8')

def api_page(s:dict, chapters:list[str])->str:
    "The API reference: every public name of the package, linked to its `show_doc` entry in its chapter."
    sys.path.insert(0, str(ROOT))
    from importlib import import_module
    modidx = import_module(f"{s['lib_path']}._modidx").d
    site = _site(s)
    lines = ["# API reference\n", "Every public name of the package, by module; each links to its documentation in the chapter that defines it.\n"]
    for mod, syms in sorted(modidx['syms'].items()):
        m = import_module(mod)
        public = set(getattr(m, '__all__', []))
        rows = [(k.split('.')[-1], v[0]) for k, v in syms.items() if k.split('.')[-1] in public and k.count('.') == mod.count('.') + 1]
        if not rows: continue
        lines.append(f"\n## `{mod}`\n")
        for name, url in sorted(rows, key=lambda r: r[0].lower()):
            obj = getattr(m, name, None)  # functions and classes: the first line of their docstring
            doc = (obj.__doc__ or '').strip().split('\n')[0] if inspect.isfunction(obj) or inspect.isclass(obj) else ''
            if doc.count('`') % 2: doc = doc.replace('`', '')
            doc = ''.join(part if i % 2 else re.sub(r'([\\*_|<>\[\]])', r'\\\1', part)  # markup escaped outside `code` and $math$
                          for i, part in enumerate(re.split(r'(`[^`]*`|\$[^$]+\$)', doc)))
            lines.append(f"- [`{name}`]({site}{url})" + (f": {doc}" if doc else ''))
    return '\n'.join(lines) + '\n'

def _site(s:dict)->str: return s['doc_host'].rstrip('/') + '/' + s.get('doc_baseurl', '').strip('/') + '/'

def relative_links(s:dict)->list[str]:
    "Links to the project's own site become relative; returns the links whose anchor no page defines."
    site, missing = _site(s), []
    ids = {}
    for f in OUT.rglob('*.html'):
        ids[f.relative_to(OUT).as_posix()] = set(re.findall(r'\bid="([^"]+)"', f.read_text(encoding='utf-8')))
    for f in OUT.rglob('*.html'):
        rel = f.relative_to(OUT)
        up = '../' * (len(rel.parts) - 1)
        text = f.read_text(encoding='utf-8')
        def fix(m):
            target = html.unescape(m.group(1)); page, _, frag = target.partition('#')
            page = page or 'index.html'
            if page not in ids: missing.append(f"{rel}: link to a page that does not exist: {target}"); return m.group(0)
            if frag and frag not in ids[page]:
                missing.append(f"{rel}: {target} (no such anchor; linked to the page)"); frag = ''
            return f'href="{up}{page}' + (f'#{html.escape(frag)}' if frag else '') + '"'
        new = re.sub(r'href="' + re.escape(site) + r'([^"]*)"', fix, text)
        if new != text: f.write_text(new, encoding='utf-8')
    return missing

# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep-going', action='store_true', help='render what can be rendered and report every failure at the end')
    ap.add_argument('--only', nargs='*', default=None, help='notebook file names to process (partial site, for a quick look)')
    ap.add_argument('--reuse', action='store_true', help='keep the notebooks processed by an earlier build when their source has not changed since')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args(argv)
    s = settings()
    t0 = time.time()
    nbs = notebooks()
    if a.only: nbs = [p for p in nbs if p.name in a.only or p.stem in a.only or 'index' == p.stem]
    known = known_failures()
    proc = ROOT/'.build'/'docs-proc'
    if proc.exists() and not a.reuse: shutil.rmtree(proc)
    proc.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(proc/(p.relative_to(NBS).as_posix().replace('/', '__'))), False) for p in nbs]
    if a.reuse:  # a notebook processed after its last change is not processed again
        fresh = [j for j in jobs if Path(j[1]).exists() and Path(j[1]).stat().st_mtime > Path(j[0]).stat().st_mtime]
        print(f"== {len(fresh)} notebooks processed before and unchanged since (--reuse)", flush=True)
        jobs = [j for j in jobs if j not in fresh]
    else: fresh = []
    print(f"== nbdev processing of {len(jobs)} notebooks ({a.workers} workers)", flush=True)
    ctx = mp.get_context('spawn')
    with ctx.Pool(a.workers, maxtasksperchild=1) as pool: results = pool.map(_process_one, jobs, chunksize=1)
    results += [{'src': j[0], 'ok': True, 'fallback': False, 'error': '', 'mixed': [], 'seconds': 0.0} for j in fresh]
    jobs += fresh
    failed = [r for r in results if not r['ok']]
    for r in results:
        print(f"   {'ok  ' if r['ok'] else 'FAIL'} {Path(r['src']).relative_to(NBS)} ({r['seconds']:.0f} s)", flush=True)
    retry = [(r['src'], jobs[[j[0] for j in jobs].index(r['src'])][1], True) for r in failed]
    if retry:
        with ctx.Pool(a.workers, maxtasksperchild=1) as pool: fb = pool.map(_process_one, retry, chunksize=1)
        for r in fb:
            if not r['ok']: print(f"   fallback rendering failed too for {Path(r['src']).name}:\n{r['trace']}", flush=True)
        fb_failed = [r for r in fb if not r['ok']]
    else: fb_failed = []
    names = lambda rs: [Path(r['src']).relative_to(NBS).as_posix() for r in rs]
    problems = []
    if failed:
        print(f"\n== {len(failed)} notebook(s) fail nbdev's processing (it runs every cell that has an import while it "
              "renders show_doc; keep imports in cells of their own):", flush=True)
        for r in failed:
            print(f" - {Path(r['src']).relative_to(NBS)}: {r['error']}")
            for m in r['mixed']: print(f"      cell mixing an import with other code: {m!r}")
        unexpected = sorted(set(names(failed)) - known)
        if unexpected: problems.append(f"notebooks that nbdev cannot process: {', '.join(unexpected)}")
    fixed = sorted(known & set(names(results)) - set(names(failed)))
    if fixed and not a.only: problems.append(f"these notebooks now process cleanly: remove them from {KNOWN.relative_to(ROOT)}: {', '.join(fixed)}")
    if fb_failed: problems.append(f"fallback rendering failed for: {', '.join(names(fb_failed))}")
    if problems and not a.keep_going:
        print('\nBUILD FAILED: ' + '\n              '.join(problems)); return 1
    ok_paths = {r['src']: j[1] for r, j in zip(results, jobs) if r['ok']} | {r['src']: d for (_, d, _), r in zip(retry, fb if retry else []) if r['ok']}
    site = _site(s)
    pages, chapters, tutorials, registered = {}, [], [], set()
    sys.path.insert(0, str(ROOT))  # show_doc entries are described from the package's own objects
    for p in nbs:
        if str(p) not in ok_paths: continue
        name = page_name(p)
        pages[name] = convert(json.loads(Path(ok_paths[str(p)]).read_text(encoding='utf-8')), site, registered)
        if name == 'index':  # the home page is also the README, whose image paths start at the repository root
            for c in pages[name]['cells']:
                if c['cell_type'] == 'markdown': c['source'] = c['source'].replace('](nbs/tutorials/)', '](tutorials/index.md)').replace('](nbs/', '](')
        if name == 'index': continue
        (tutorials if name.startswith('tutorials/') else chapters).append(name)
    if 'index' not in pages: print("nbs/index.ipynb is missing or failed: the site has no home page"); return 1
    sphinx_sources(pages, s, tutorials, chapters)
    print(f"== Sphinx (-W: a warning fails the build) into {OUT.relative_to(ROOT)}/", flush=True)
    html_dir = ROOT/'.build'/'docs-out'/'html'  # myst-nb writes its output files beside it (docs-out/jupyter_execute)
    if html_dir.parent.exists(): shutil.rmtree(html_dir.parent)
    rc = subprocess.call([sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html',
                          '-d', str(ROOT/'.build'/'docs-doctrees'), str(STAGE), str(html_dir)])
    if rc: print("BUILD FAILED: Sphinx reported warnings or errors (above)"); return rc
    if OUT.exists(): shutil.rmtree(OUT)
    shutil.move(str(html_dir), str(OUT))
    missing = relative_links(s)
    if missing:
        print(f"== {len(missing)} link(s) to names without a show_doc entry on their page (linked to the page instead):")
        for m in missing[:40]: print('   ' + m)
        if len(missing) > 40: print(f"   ... and {len(missing) - 40} more")
        problems.append(f"{len(missing)} link(s) to a name without its show_doc entry: add `show_doc(NAME)` "
                        "after the cell that defines it")
    (OUT/'.nojekyll').touch()
    print(f"== site built in {time.time() - t0:.0f} s: {len(pages)} pages ({len(chapters)} chapters, {len(tutorials)} tutorials) in {OUT.relative_to(ROOT)}/")
    if problems:
        print('\nBUILD FAILED (--keep-going): ' + '\n              '.join(problems)); return 1
    return 0

if __name__ == '__main__': sys.exit(main())
