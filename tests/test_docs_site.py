"""The documentation site, as a reader meets it: every page of `_docs/` opened in headless Chromium.

Build the site first (`bash tools/build_docs.sh`); `.ci/run` does, and installs Debian's chromium.
Each page fails on: console errors, uncaught page errors, HTTP errors, any request that leaves
127.0.0.1, links inside the site to a missing page or anchor, images that do not load, and math
left as raw TeX after MathJax ran. Screenshots of the home page, a tutorial (when there is one)
and an API page go to `.build/screenshots/`."""
import functools, http.server, os, re, shutil, tempfile, threading
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS, SHOTS = ROOT/'_docs', ROOT/'.build'/'screenshots'
CHROMIUM = os.environ.get('CHROMIUM', '/usr/bin/chromium')
ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run']
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
                                                    viewport={'width': 1280, 'height': 900})
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
        if shot:
            shot.parent.mkdir(parents=True, exist_ok=True)
            if page != 'index.html':  # show the first show_doc entry (its 'source' link), not only the page's top
                p.evaluate("() => { document.documentElement.style.scrollBehavior = 'auto';"  # the theme scrolls smoothly
                           " const a = Array.from(document.querySelectorAll('article a')).find(a => a.textContent.trim() == 'source');"
                           " if (a) window.scrollTo(0, a.getBoundingClientRect().top + window.scrollY - 20); }")
                p.wait_for_timeout(200)
            p.screenshot(path=str(shot))
    finally: p.close()
    return problems

def _shot_name(page:str)->Path|None:
    tutorials = [q for q in PAGES if q.startswith('tutorials/') and q != 'tutorials/index.html']
    if page == 'index.html': return SHOTS/'home.png'
    if tutorials and page == tutorials[0]: return SHOTS/'tutorial.png'
    if page == 'calibration.html': return SHOTS/'api_calibration.png'
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
