"""The documentation site, as a reader meets it: every page of `_docs/` opened in headless Chromium.

Build the site first (`bash tools/build_docs.sh`); `.ci/run` does, and installs Debian's chromium.
Each page, at a 1400 px wide window, fails on: console errors, uncaught page errors, HTTP errors, any
request that leaves 127.0.0.1, links inside the site to a missing page or anchor, images that do not
load, math left as raw TeX after MathJax ran, a code block or display equation clipped (scrolling
sideways), a figure shown at less than half its pixel width (its labels become unreadable), a class
rendered as a function (`def Name(`), a raw Markdown link or `$` inside a rendered signature, and a
file or notebook named in the text that the repository does not have. The site as a whole fails on
an empty general index and a missing `objects.inv`. Screenshots go to `.build/screenshots/`: the home
page's first screen (1400x900), a tutorial, the table chapter and the API entry of `ConformalMask`."""
import functools, http.server, importlib, inspect, os, re, shutil, subprocess, tempfile, threading, zlib
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS, SHOTS = ROOT/'_docs', ROOT/'.build'/'screenshots'
CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run']
WIDTH = 1400
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob('*.html')) if (DOCS/'index.html').exists() else []

def _why_skip():
    if not (DOCS/'index.html').exists(): return "no site in _docs/: build it with `bash tools/build_docs.sh`"
    if not Path(CHROMIUM).exists(): return f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends chromium (or set CHROMIUM)"
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "Playwright for Python is not installed: pip install -e '.[dev]'"

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture(scope='module')
def site():
    "The site served on 127.0.0.1 (a free port), and a fresh headless Chromium on it."
    why = _why_skip()
    if why: pytest.skip(why)
    from playwright.sync_api import sync_playwright
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(DOCS)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    profile = tempfile.mkdtemp(prefix='chromium-profile-')
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS,
                                                    viewport={'width': WIDTH, 'height': 900})
        try: yield base, ctx
        finally:
            ctx.close(); httpd.shutdown(); httpd.server_close(); shutil.rmtree(profile, ignore_errors=True)

@functools.lru_cache(None)
def _ids(page:str)->frozenset:
    "The element ids of a built page (what an internal link's #fragment can point at)."
    return frozenset(re.findall(r'\bid="([^"]+)"', (DOCS/page).read_text(encoding='utf-8')))

_RAW_TEX = re.compile(r'\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\$[^$\s][^$\n]{0,200}?\$')
_VISIBLE_TEXT = """() => {
  const main = document.querySelector('article') || document.body;
  const c = main.cloneNode(true);
  c.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
  return c.textContent;
}"""

# what a reader sees: measured in the browser after MathJax ran
_LAYOUT = """() => {
  const art = document.querySelector('article') || document.body;
  const shown = e => e.offsetParent !== null && e.clientWidth > 0;
  const clip = Array.from(art.querySelectorAll('pre')).filter(e => shown(e) && e.scrollWidth > e.clientWidth + 2)
                    .map(e => e.textContent.trim().split('\\n')[0].slice(0, 70));
  const eq = Array.from(art.querySelectorAll('mjx-container[display="true"]'))
                  .filter(e => shown(e) && (e.scrollWidth > e.clientWidth + 2 || e.getBoundingClientRect().right > art.getBoundingClientRect().right + 2))
                  .map(e => (e.getAttribute('aria-label') || e.textContent || '').slice(0, 70));
  const small = Array.from(art.querySelectorAll('img')).filter(i => i.naturalWidth >= 300 && shown(i) && i.clientWidth < i.naturalWidth / 2)
                     .map(i => `${i.src.split('/').pop()} (${i.naturalWidth} px shown at ${i.clientWidth} px)`);
  const sigs = Array.from(art.querySelectorAll('dl.py > dt')).map(d => d.textContent.replace(/\\s+/g, ' ').trim());
  const oldsigs = Array.from(art.querySelectorAll('.cell_output pre')).map(e => e.textContent.trim()).filter(t => /^(def|class) \\w+\\(/.test(t));
  const funcs = Array.from(art.querySelectorAll('dl.py.function > dt[id], dl.py.method > dt[id]')).map(d => d.id);
  const c = art.cloneNode(true); c.querySelectorAll('script, style, mjx-container').forEach(e => e.remove());
  const prose = c.cloneNode(true); prose.querySelectorAll('pre, .highlight').forEach(e => e.remove());
  return {clip, eq, small, sigs, oldsigs, funcs, text: c.textContent, prose: prose.textContent};
}"""

@functools.lru_cache(None)
def _repo_names()->tuple[frozenset, frozenset]:
    "The repository's file paths and names, and the stems of its notebooks."
    try: files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except Exception: files = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob('*') if p.is_file() and '.git' not in p.parts]
    files += [p.relative_to(ROOT).as_posix() for p in (ROOT/'nbs').rglob('*.ipynb')]  # new notebooks, not yet committed
    names = frozenset(files) | frozenset(f.split('/')[-1] for f in files) | frozenset('/'.join(f.split('/')[-2:]) for f in files)
    stems = frozenset(Path(f).stem for f in files if f.endswith('.ipynb'))
    return names, stems

_FILE = re.compile(r'(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:ipynb|md|py|ini|yml|toml))\b')
_NB_STEM = re.compile(r'(?<![\w./-])(\d{2}[a-z]?_[a-z][a-z_]*[a-z])\b')

def _missing_files(text:str, prose:str)->list[str]:
    "Notebooks and project files named on the page that the repository does not have (stale references)."
    names, stems = _repo_names()
    bad = set()
    for m in _FILE.finditer(text):
        f = m.group(1)
        if f.endswith('.py') and f not in prose: continue  # a script in a code example: the reader's own file
        if f.endswith('.md') and '/' not in f and not re.fullmatch(r'[A-Z][A-Z_]*\.md', f): continue  # a report file the package writes
        if f not in names and f.split('/')[-1] not in names: bad.add(f)
    bad |= {m.group(1) for m in _NB_STEM.finditer(text) if m.group(1) not in stems}
    return sorted(bad)

@functools.lru_cache(None)
def _is_class(ref:str)->bool:
    "Whether a Sphinx object id or a bare name of the package (`ConformalMask`) is a class."
    if '.' in ref:
        parts = ref.split('.')
        for i in range(len(parts) - 1, 0, -1):
            try: obj = importlib.import_module('.'.join(parts[:i]))
            except Exception: continue
            try:
                for a in parts[i:]: obj = getattr(obj, a)
            except AttributeError: return False
            return inspect.isclass(obj)
        return False
    return ref in _package_classes()

@functools.lru_cache(None)
def _package_classes()->frozenset:
    "Names of the classes that the package's modules define (from nbdev's index of the package)."
    try: syms = importlib.import_module('conformal_superres._modidx').d['syms']
    except Exception: return frozenset()
    out = set()
    for mod, entries in syms.items():
        try: m = importlib.import_module(mod)
        except Exception: continue
        for k in entries:
            name = k[len(mod) + 1:]
            if '.' not in name and inspect.isclass(getattr(m, name, None)): out.add(name)
    return frozenset(out)

WIDE_FIGURES = Path(__file__).resolve().parent/'docs_wide_figures.txt'
def _wide_figure_pages()->set:
    "Pages allowed, for now, to show figures below half their width (see docs_wide_figures.txt)."
    if not WIDE_FIGURES.exists(): return set()
    return {l.split('#')[0].strip() for l in WIDE_FIGURES.read_text(encoding='utf-8').splitlines()} - {''}

def _layout_problems(lay:dict, page:str='')->list[str]:
    out = []
    pending = page in _wide_figure_pages()
    if pending and not lay['small']:
        out.append(f"{page} no longer shows a figure below half its width: delete its line from {WIDE_FIGURES.name}")
    if pending: lay = dict(lay, small=[])
    if lay['clip']: out.append(f"{len(lay['clip'])} code block(s) scroll sideways at {WIDTH} px: {lay['clip'][:3]}")
    if lay['eq']: out.append(f"{len(lay['eq'])} display equation(s) clipped at {WIDTH} px: {lay['eq'][:3]}")
    if lay['small']: out.append(f"{len(lay['small'])} figure(s) shown below half their width (labels unreadable): {lay['small'][:4]}")
    as_def = [t.split('(')[0] for t in lay['oldsigs'] if t.startswith('def ') and _is_class(t[4:].split('(')[0])]
    as_def += [i for i in lay['funcs'] if _is_class(i)]
    if as_def: out.append(f"class(es) rendered as a function: {sorted(set(as_def))[:5]}")
    raw = [re.sub(r'\s+', ' ', t)[:80] for t in lay['sigs'] + lay['oldsigs'] if re.search(r'\]\(|\$', t)]
    if raw: out.append(f"{len(set(raw))} signature(s) with a raw Markdown link or `$`: {sorted(set(raw))[:3]}")
    missing = _missing_files(lay['text'], lay['prose'])
    if missing: out.append(f"names files or notebooks that do not exist: {missing[:8]}")
    return out

def _check_page(base:str, ctx, page:str, shot:Path|None=None)->list[str]:
    problems, origin = [], base.rstrip('/')
    p = ctx.new_page()
    def on_request(route):
        url = route.request.url
        if url.startswith(base) or url.startswith(('data:', 'blob:')): return route.continue_()
        problems.append(f"request leaving the machine: {url}"); route.abort()
    p.route('**/*', on_request)
    p.on('console', lambda m: m.type == 'error' and problems.append(f"console error: {m.text}"))
    p.on('pageerror', lambda e: problems.append(f"page error: {e}"))
    p.on('response', lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    try:
        resp = p.goto(base + page, wait_until='load')
        if resp is None or resp.status != 200: problems.append(f"HTTP {resp and resp.status} for the page itself")
        # MathJax typesets after load: wait for its startup promise where the page has math
        p.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise.then(() => true) : true")
        p.wait_for_load_state('networkidle')
        bad = p.evaluate("() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        problems += [f"image did not load: {u}" for u in bad]
        tex = _RAW_TEX.findall(p.evaluate(_VISIBLE_TEXT))
        if tex: problems.append(f"math left as raw TeX (MathJax did not typeset it): {tex[:5]}")
        if p.evaluate("() => document.querySelectorAll('.math').length") and not p.evaluate("() => document.querySelectorAll('mjx-container').length"):
            problems.append("the page has math but MathJax typeset none of it")
        for href in set(p.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")):
            if not href.startswith(origin + '/'): continue
            parts = urlsplit(href)
            target = unquote(parts.path).lstrip('/') or 'index.html'
            if target.endswith('/'): target += 'index.html'
            if not (DOCS/target).is_file(): problems.append(f"broken link to {href}"); continue
            if parts.fragment and target.endswith('.html') and unquote(parts.fragment) not in _ids(target):
                problems.append(f"link to a missing anchor: {href}")
        if page not in ('genindex.html', 'search.html', 'py-modindex.html'): problems += _layout_problems(p.evaluate(_LAYOUT), page)
        if shot:
            shot.parent.mkdir(parents=True, exist_ok=True)
            where = SHOT_AT.get(page)
            if where:  # the part of the page the screenshot is for, not only its top
                p.evaluate("(sel) => { document.documentElement.style.scrollBehavior = 'auto';"  # the theme scrolls smoothly
                           " const a = document.querySelector(sel);"
                           " if (a) window.scrollTo(0, a.getBoundingClientRect().top + window.scrollY - 20); }", where)
                p.wait_for_timeout(200)
            p.screenshot(path=str(shot))
    finally: p.close()
    return problems

# where on its page each screenshot looks (a CSS selector; none: the first screen)
SHOT_AT = {'mask.html': '[id="conformal_superres.mask.ConformalMask"]', 'experiments/table.html': '#the-paper-s-numbers table', 'api.html': None}

def _shot_name(page:str)->Path|None:
    tutorials = [q for q in PAGES if q.startswith('tutorials/') and q != 'tutorials/index.html']
    if page == 'index.html': return SHOTS/'home.png'
    if tutorials and page == tutorials[0]: return SHOTS/'tutorial.png'
    if page == 'mask.html': return SHOTS/'api_conformalmask.png'
    if page == 'experiments/table.html': return SHOTS/'table.png'
    if page == 'api.html': return SHOTS/'api_index.png'
    if page == 'widgets.html': return SHOTS/'widgets.png'

@pytest.mark.parametrize('page', PAGES or ['(no site built)'])
def test_page_in_browser(site, page):
    base, ctx = site
    problems = _check_page(base, ctx, page, _shot_name(page))
    assert not problems, f"{page}:\n  " + '\n  '.join(problems)

def test_site_has_every_chapter(site):
    "Each notebook of nbs/ has its page (number prefix dropped), and every tutorial is under tutorials/."
    nbs = ROOT/'nbs'
    page = lambda p: (p.relative_to(nbs).parent / re.sub(r'^\d+[a-z]?_', '', p.stem)).with_suffix('.html').as_posix()
    want = {page(p) for p in nbs.rglob('*.ipynb') if not any(s.startswith(('_', '.')) for s in p.relative_to(nbs).parts)}
    missing = sorted(w for w in want if w not in PAGES and re.sub(r'(^|/)\d+[a-z]?_', r'\1', w) not in PAGES)
    assert not missing, f"pages missing from _docs/: {missing}; rebuild with `bash tools/build_docs.sh`"

def _inventory()->list[tuple[str, str]]:
    "The (name, role) entries of the site's objects.inv (Sphinx's intersphinx inventory, format 2)."
    raw = (DOCS/'objects.inv').read_bytes()
    body = zlib.decompress(raw.split(b'\n', 4)[4]).decode()
    return [(l.split()[0], l.split()[1]) for l in body.splitlines() if l.strip()]

def test_objects_registered():
    "The package's classes and functions are Sphinx objects: an inventory for intersphinx, a general index that lists them."
    if not (DOCS/'index.html').exists(): pytest.skip("no site in _docs/: build it with `bash tools/build_docs.sh`")
    assert (DOCS/'objects.inv').exists(), "no objects.inv: the site registers no Python objects"
    inv = dict(_inventory())
    assert inv.get('conformal_superres.mask.ConformalMask') == 'py:class', "ConformalMask is not registered as a class"
    assert inv.get('conformal_superres.mask.ConformalMask.calibrate') == 'py:method', "ConformalMask.calibrate is not a method"
    py = [n for n, r in inv.items() if r.startswith('py:')]
    assert len(py) > 100, f"only {len(py)} Python objects registered"
    wrong = [n for n, r in inv.items() if r in ('py:function', 'py:method') and _is_class(n)]
    assert not wrong, f"classes registered as functions: {wrong[:5]}"
    private = [n for n in py if any(part.startswith('_') and not part.endswith('__') for part in n.split('.'))]
    assert not private, f"private names documented: {private[:5]}"
    gi = (DOCS/'genindex.html').read_text(encoding='utf-8') if (DOCS/'genindex.html').exists() else ''
    entries = re.findall(r'<a href="[^"]+#conformal_superres\.', gi)
    assert len(entries) > 100, f"the general index lists {len(entries)} objects"
