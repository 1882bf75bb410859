"Tests of tools/fix_notebooks.py and tools/run_notebooks.py on small notebooks written here."
import importlib.util, json, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

fix = _tool('fix_notebooks')
run = _tool('run_notebooks')

def cell(kind, source, outputs=None):
    c = {'cell_type': kind, 'id': f'{abs(hash(source)) % 16**8:08x}', 'metadata': {}, 'source': source}
    if kind == 'code': c.update(execution_count=None, outputs=outputs or [])
    return c

def write(path, cells):
    nb = {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb, indent=1, sort_keys=True) + '\n')
    return path

def sources(path): return [fix.src(c) for c in json.loads(path.read_text())['cells']]

STORED = [{'name': 'stdout', 'output_type': 'stream', 'text': ['made once, elsewhere\n']}]

def test_fixer_moves_imports_and_intro_and_is_idempotent(tmp_path):
    p = write(tmp_path / 'nb.ipynb', [
        cell('markdown', '# Title\n\n> One line\n> that goes on.\n\nThe introduction.'),
        cell('code', 'x = 1'),
        cell('code', '#| hide\nimport math\ny = math.sqrt(x)  # uses x from an earlier cell\nimport json'),
        cell('code', '#| slow\nfrom math import pi\nz = pi'),
        cell('code', 'def f():\n    import os\n    return os.sep\nf()'),
    ])
    assert fix.process(p, fix=False)   # problems found
    fix.process(p, fix=True)
    s = sources(p)
    assert s[0] == '# Title\n\n> One line that goes on.'
    assert s[1] == 'The introduction.'
    assert s[3:5] == ['#| hide\nimport math\nimport json', '#| hide\ny = math.sqrt(x)  # uses x from an earlier cell']
    assert s[5:7] == ['#| slow\nfrom math import pi', '#| slow\nz = pi']
    left = fix.process(p, fix=False)
    assert len(left) == 1 and 'manual' in left[0]   # an import inside a def is left for a person
    before = p.read_text()
    fix.process(p, fix=True)
    assert p.read_text() == before

def test_runner_stores_outputs_and_keeps_flagged_ones(tmp_path):
    p = write(tmp_path / 'nb.ipynb', [
        cell('markdown', '# Title'),
        cell('code', 'print(6 * 7)'),
        cell('code', '#| slow\nraise RuntimeError("slow cells are not run")', STORED),
        cell('code', 'from pathlib import Path\nPath.cwd().name'),
    ])
    ok, _, n = run.run_notebook(p, {'slow', 'gpu'})
    assert ok and n == 2
    cells = json.loads(p.read_text())['cells']
    assert ''.join(cells[1]['outputs'][0]['text']) == '42\n'
    assert cells[2]['outputs'] == STORED
    assert tmp_path.name in ''.join(cells[3]['outputs'][0]['data']['text/plain'])   # run in the notebook's folder

def test_runner_fails_loudly_and_writes_nothing(tmp_path, capsys):
    p = write(tmp_path / 'nb.ipynb', [cell('markdown', '# Title'), cell('code', 'print(1)'), cell('code', '1 / 0')])
    before = p.read_text()
    ok, _, _ = run.run_notebook(p, {'slow', 'gpu'})
    assert not ok and p.read_text() == before
    assert 'ZeroDivisionError' in capsys.readouterr().err

def test_device_script_names_files_that_exist():
    "bench/gpu_check.sh runs once on a lent GPU with no second try: every notebook and script it names must exist."
    import re
    text = (ROOT / 'bench' / 'gpu_check.sh').read_text()
    named = set(re.findall(r'\b((?:nbs|bench|tools)/[\w./-]+\.(?:ipynb|py|sh))\b', text))
    assert any(p.endswith('.ipynb') for p in named) and any(p.endswith('.py') for p in named)
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"bench/gpu_check.sh names files that are not in the repository: {missing}"
    for nb in (p for p in named if p.endswith('.ipynb')):   # the GPU step runs its `#| gpu` cells: it must have some
        assert '#| gpu' in (ROOT / nb).read_text(), nb

def test_stored_progress_bars_keep_only_their_final_state():
    "tqdm redraws a line with carriage returns: a notebook stores what a terminal would show, not every frame."
    w = lambda s: s.ljust(30)   # tqdm pads each frame to the width of the one it overwrites
    frames = ["\r", w("photos:   0%|   | 0/22 [?it/s]") + "\r", w("photos:  45%|#  | 10/22") + "\r",
              w("photos: 100%|###| 22/22") + "\n", "\n", "a line of its own\n",
              "\r", w("temporary:  50%|#  | 1/2") + "\r", "\r" + " " * 30 + "\r"]   # leave=False clears its line
    outs = run._tidy([{'name': 'stderr', 'output_type': 'stream', 'text': frames}], 1400)
    assert outs[0]['text'] == ["photos: 100%|###| 22/22\n", "\n", "a line of its own\n"]
    assert run._as_shown("abcdef\rXY\n") == ["XYcdef\n"]   # a shorter rewrite leaves the rest, as on a terminal
    plain = ["no carriage return\n", "\n", "kept as it is"]
    assert run._tidy([{'name': 'stdout', 'output_type': 'stream', 'text': list(plain)}], 1400)[0]['text'] == plain

def test_stored_figures_are_tidied_once():
    "A photograph-sized figure is capped and turned into a palette PNG once; tidying the notebook again leaves it alone."
    import base64, io
    import numpy as np
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 1600, 3), dtype=np.uint8)).save(buf, 'PNG')
    outs = [{'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': base64.b64encode(buf.getvalue()).decode()}}]
    once = run._tidy(outs, 1400)[0]['data']['image/png']
    im = Image.open(io.BytesIO(base64.b64decode(once)))
    assert max(im.size) == 1400 and im.mode == 'P'
    again = run._tidy([{'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': once}}], 1400)[0]['data']['image/png']
    assert again == once

# ---------------------------------------------------------------- tools/build_docs.py: show_doc as Sphinx objects
def _showdoc_md(name, module_path):
    return (f"---\n\n[source](https://github.com/o/r/blob/main/{module_path}.py#L1)"
            '{target="_blank"}\n\n' f"### {name}\n\n```python\n\ndef {name}(\n)\n```\n")

def test_show_doc_becomes_a_registered_object():
    docs = _tool('build_docs')
    seen = set()
    cls = docs.render_showdoc('show_doc(ConformalMask)', _showdoc_md('ConformalMask', 'conformal_superres/mask'), seen)
    assert '{py:class} ConformalMask(model,' in cls and ':module: conformal_superres.mask' in cls
    assert '| `n_samples` | `int` | `10` |' in cls                  # the docments comments as a table
    assert '](' not in cls.split('\n')[2]                          # no Markdown link in the signature line
    # a function defined after its class and attached to it: a qualified method, under both anchors
    m = docs.render_showdoc('show_doc(calibrate)', _showdoc_md('calibrate', 'conformal_superres/mask'), seen)
    assert '{py:method} ConformalMask.calibrate(pairs,' in m and '**scale_options' in m
    assert 'id="calibrate"' in m and 'id="conformalmask.calibrate"' in m
    assert r'r\*' in m                                             # `{alpha: r*}`: a star, not italics
    # a second entry for the same object is not registered twice; a private name is not documented
    again = docs.render_showdoc('show_doc(ConformalMask)', _showdoc_md('ConformalMask', 'conformal_superres/mask'), seen)
    assert ':no-index:' in again
    assert docs.render_showdoc('show_doc(_x)', _showdoc_md('_sample_sigma', 'conformal_superres/mask'), seen) == ''

def test_silent_cells_are_classified():
    docs = _tool('build_docs')
    assert docs.cell_kind('import os\nfrom math import pi') == 'import'
    assert docs.cell_kind('test_eq(1, 1)\nassert True\nwith x: test_fail(f)') == 'test'
    assert docs.cell_kind('x = 1\ntest_eq(x, 1)') == 'code'

def test_tidy_scrubs_what_changes_between_runs(tmp_path):
    outs = [{'name': 'stderr', 'output_type': 'stream',
             'text': ['<ipython-input-3-a33038de3fae>:1: UserWarning: w\n', 'wrote /tmp/tmpab_12x/calibration.json\n',
                      '<object at 0x7f85fcd92e80>\n']}]
    text = ''.join(run._tidy(outs, 1400)[0]['text'])
    assert text == '<cell>:1: UserWarning: w\nwrote <tmp>/calibration.json\n<object at 0x...>\n', text
    p = write(tmp_path / 'a.ipynb', [cell('code', 'print(1)', [{'name': 'stdout', 'output_type': 'stream', 'text': ['in /tmp/tmpq1/x\n']}])])
    assert run.main(['--check', str(p)]) == 1                      # CI: an untidy notebook fails
    run.main(['--tidy-only', str(p)])
    assert run.main(['--check', str(p)]) == 0

def test_readme_takes_figures_and_tables_from_the_index(tmp_path):
    import base64
    mk = _tool('make_readme')
    png = base64.b64encode(b'\x89PNG fake').decode()
    p = write(tmp_path / 'index.ipynb', [
        cell('markdown', '# T'), cell('code', '#| hide\nimport x'),
        cell('code', '#| echo: false\nfig()', [{'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': png, 'text/plain': ['<Figure>']}}]),
        cell('code', 'Markdown(t)', [{'output_type': 'execute_result', 'metadata': {}, 'execution_count': None,
                                      'data': {'text/markdown': '| a |\n|--|\n| 1 |', 'text/plain': ['<Markdown>']}}])])
    text, pictures = mk.convert(p)
    assert pictures == {'nbs/images/index_2.png': b'\x89PNG fake'}
    assert '![figure](nbs/images/index_2.png)' in text and 'fig()' not in text and 'import x' not in text
    assert '| a |\n|--|\n| 1 |' in text and '```python\nMarkdown(t)\n```' in text
