"The command line at its edges, on real files: every failure says what went wrong on one line, exits with its documented status, and loses or half-writes nothing."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from conformal_superres.cli.main import main
from conformal_superres.cli.errors import EXIT_CODES

FAST = ['--model', 'bicubic-perturbed', '--crop', '32', '--crops-per-image', '6', '-M', '3', '--quiet']

def run(argv, capsys):
    "(exit status, stdout, stderr) of one command run in this process."
    try: main(argv); code = 0
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err

def fails(argv, capsys, code, contains):
    status, out, err = run(argv, capsys)
    assert status == code, (status, err)
    assert err.startswith('conformal-superres: error: ') and contains in err, err
    assert 'Traceback' not in err and err.count('\n') == err.count('conformal-superres: ')
    return err

def snapshot(folder:Path)->dict:
    "Every file under `folder` with its bytes: to show that nothing was lost, changed or half-written."
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    rng = np.random.default_rng(0)
    photos = root / 'photos'; photos.mkdir()
    for name in 'abc':
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(photos / f'{name}.png')
    small = root / 'small.png'
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(small)
    try: main(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,1', '--out', str(root / 'cal.json')])
    except SystemExit as e: assert not e.code
    return root, photos, small

def test_version_and_help(capsys):
    status, out, _ = run(['--version'], capsys)
    assert status == 0 and out.startswith('conformal-superres ')
    status, out, _ = run(['calibrate', '--help'], capsys)
    out = ' '.join(out.split())                        # as read, whatever the terminal width wrapped
    assert status == 0 and '(default: 0.1)' in out and 'n >= B/alpha - 1' in out and 'normalised CIELAB' in out
    status, out, _ = run(['--help'], capsys)
    assert all(f'{k:>3}' in out for k in EXIT_CODES)

def test_calibrate_refuses_to_clobber_and_overwrite_replaces(setup, capsys):
    root, photos, _ = setup
    before = (root / 'cal.json').read_bytes()
    fails(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5', '--out', str(root / 'cal.json')], capsys, 4, 'pass --overwrite')
    assert (root / 'cal.json').read_bytes() == before
    target = root / 'replaced.json'; target.write_bytes(before)
    status, out, _ = run(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.7', '--out', str(target), '--overwrite'], capsys)
    assert status == 0 and f'wrote the calibration to {target}' in out
    assert [d['alpha'] for d in json.loads(target.read_text())['limits']] == [0.7]

def test_unwritable_output_found_before_work(setup, capsys, tmp_path):
    root, photos, _ = setup
    blocker = tmp_path / 'file'; blocker.write_text('a regular file')
    err = fails(['calibrate', '--data', str(photos), *FAST, '--out', str(blocker / 'cal.json')], capsys, 4, 'is a file, not a folder')
    assert blocker.read_text() == 'a regular file' and snapshot(tmp_path) == {'file': b'a regular file'}

@pytest.fixture
def mount(tmp_path):
    "Mount a tmpfs with the given options at a fresh folder (root only); unmounted afterwards."
    points = []
    def make(options):
        d = tmp_path / f'mnt{len(points)}'; d.mkdir()
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(d)], capture_output=True)
        if r.returncode: pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'not permitted'})")
        points.append(d); return d
    yield make
    for d in points: subprocess.run(['umount', str(d)])

def test_read_only_location(setup, capsys, mount):
    root, photos, small = setup
    ro = mount('size=1m,ro')
    fails(['calibrate', '--data', str(photos), *FAST, '--out', str(ro / 'cal.json')], capsys, 4, 'not writable')
    fails(['predict', '--calibration', str(root / 'cal.json'), str(small), '--out', str(ro / 'pred'), '--quiet'], capsys, 4, 'not writable')
    assert list(ro.iterdir()) == []

def test_full_disk_leaves_nothing_half_written(setup, capsys, mount):
    root, photos, small = setup
    full = mount('size=64k')
    (full / 'keep.txt').write_bytes(b'x' * 1000)
    big = root / 'big.png'
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(big)  # outputs ~300 kB > 64 kB
    fails(['predict', '--calibration', str(root / 'cal.json'), str(big), '--out', str(full), '--quiet'], capsys, 4, 'No space left on device')
    assert snapshot(full) == {'keep.txt': b'x' * 1000}          # no partial PNG, no .npy, no temporary file

def test_predict_outputs_unique_and_atomic(setup, capsys, tmp_path):
    root, _, small = setup
    for d in ('a', 'b'):
        (tmp_path / d).mkdir(); (tmp_path / d / 'img.png').write_bytes(small.read_bytes())
    out = tmp_path / 'out'
    status, stdout, _ = run(['predict', '--calibration', str(root / 'cal.json'), str(tmp_path / 'a' / 'img.png'),
                             str(tmp_path / 'b' / 'img.png'), '--out', str(out), '--quiet', '--alpha', '1'], capsys)
    assert status == 0 and f'to {out}' in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f'{s}_{k}' for s in ('a_img', 'b_img') for k in ('prediction.png', 'mask.png', 'overlay.png', 'sigma.png', 'sigma.npy'))
    assert np.array(Image.open(out / 'a_img_prediction.png')).shape == (96, 80, 3)
    assert np.array(Image.open(out / 'a_img_overlay.png')).shape[0] > 96           # the legend strip under the picture
    before = snapshot(out)
    fails(['predict', '--calibration', str(root / 'cal.json'), str(tmp_path / 'a' / 'img.png'), str(tmp_path / 'b' / 'img.png'),
           '--out', str(out)], capsys, 4, 'pass --overwrite')
    assert snapshot(out) == before

def test_bad_input_in_a_list_stops_before_writing(setup, capsys, tmp_path):
    root, _, small = setup
    (tmp_path / 'notes.png').write_text('not an image')
    tiny = tmp_path / 'tiny.png'; Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tiny)
    out = tmp_path / 'out'
    err = fails(['predict', '--calibration', str(root / 'cal.json'), str(small), str(tmp_path / 'notes.png'), str(tiny),
                 str(tmp_path), '--out', str(out)], capsys, 3, '3 input images cannot be used')
    assert 'notes.png' in err and 'tiny.png is 4x4 px' in err and 'is a folder' in err
    assert not out.exists()

def test_calibration_files_edited_by_hand(setup, capsys, tmp_path):
    root, _, small = setup
    good = json.loads((root / 'cal.json').read_text())
    edits = {'alpha0': (lambda d: d['limits'][0].update(alpha=0), 'limits[0].alpha: 0 is outside'),
             'nan': (lambda d: d['limits'][0].update(limit=float('nan')), 'limits[0].limit: nan'),
             'dup': (lambda d: d['limits'].append(dict(d['limits'][0])), 'appears twice'),
             'empty': (lambda d: d.update(limits=[]), 'field limits: missing or empty'),
             'n': (lambda d: d.update(n=-1), 'field n: -1'),
             'bound': (lambda d: d.update(bound=2.0), 'field bound: 2 differs'),
             'grow': (lambda d: d['limits'][1].update(limit=-1.0), 'limits grow with alpha'),
             'version1': (lambda d: d.update(format_version=1, thresholds=[dict(alpha=0.5, threshold=0.1)]), 'calibrate again')}
    for name, (edit, contains) in edits.items():
        doc = json.loads(json.dumps(good)); edit(doc)
        f = tmp_path / f'{name}.json'; f.write_text(json.dumps(doc))
        err = fails(['predict', '--calibration', str(f), str(small), '--out', str(tmp_path / 'out')], capsys, 3, contains)
        assert str(f) in err
    fails(['predict', '--calibration', str(small), str(small), '--out', str(tmp_path / 'out')], capsys, 3, 'is not a calibration file (binary data')
    assert not (tmp_path / 'out').exists()

def test_calibrate_with_a_record_store_resumes(setup, capsys, tmp_path):
    "--store (engine local): the records of every image are stored; a second run reuses them and gives the same limits."
    root, photos, _ = setup
    store = tmp_path / 'store'
    status, out, _ = run(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,1', '--store', str(store), '--out', str(tmp_path / 'a.json')], capsys)
    assert status == 0 and 'limit r*=' in out and f'wrote the calibration to {tmp_path / "a.json"}' in out
    stored = snapshot(store)
    assert len(stored) > 18
    status, out, _ = run(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,1', '--store', str(store), '--out', str(tmp_path / 'b.json')], capsys)
    assert status == 0 and snapshot(store) == stored           # nothing recomputed
    assert json.loads((tmp_path / 'a.json').read_text())['limits'] == json.loads((tmp_path / 'b.json').read_text())['limits']
    fails(['calibrate', '--data', str(photos), *FAST, '--engine', 'local', '--band-rows', '0', '--out', str(tmp_path / 'c.json')], capsys, 2, '--band-rows is 0')
    assert not (tmp_path / 'c.json').exists()

def test_device_and_alpha(setup, capsys, tmp_path):
    root, photos, small = setup
    import torch
    if not torch.cuda.is_available():
        fails(['predict', '--calibration', str(root / 'cal.json'), str(small), '--device', 'cuda', '--out', str(tmp_path / 'o')], capsys, 5, 'CUDA is not available')
    fails(['predict', '--calibration', str(root / 'cal.json'), str(small), '--device', 'gpu9', '--out', str(tmp_path / 'o')], capsys, 2, 'is not a device')
    fails(['calibrate', '--data', str(photos), *FAST, '--alphas', '3.5', '--out', str(tmp_path / 'c.json')], capsys, 2, 'outside (0, B=3]')
    fails(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,0.5', '--out', str(tmp_path / 'c.json')], capsys, 2, 'twice')
    fails(['evaluate', '--calibration', str(root / 'cal.json'), '--data', str(photos), '--alphas', '0.3', '--out', str(tmp_path / 'e')], capsys, 2, 'was not calibrated')
    assert not any(tmp_path.iterdir())

def test_debug_shows_the_traceback(setup, capsys, tmp_path):
    _, photos, _ = setup
    status, _, err = run(['calibrate', '--debug', '--data', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'c.json')], capsys)
    assert status == 3 and 'Traceback' in err and err.rstrip().splitlines()[-1].startswith('conformal-superres: error: ')

def test_keep_samples_then_evaluate_with_samples(setup, capsys, tmp_path):
    root, photos, _ = setup
    kept = tmp_path / 'kept'
    status, out, _ = run(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,1', '--out', str(tmp_path / 'cal.json'),
                          '--keep-samples', str(kept)], capsys)
    assert status == 0 and str(kept) in out
    assert json.loads((tmp_path / 'cal.json').read_text())['limits'] == json.loads((root / 'cal.json').read_text())['limits']
    status, out, _ = run(['calibrate', '--samples', str(kept), '-M', '3', '--alphas', '0.5,1', '--out', str(tmp_path / 'again.json'), '--quiet'], capsys)
    assert status == 0
    assert json.loads((tmp_path / 'again.json').read_text())['limits'] == json.loads((root / 'cal.json').read_text())['limits']
    ev = tmp_path / 'ev'
    status, out, _ = run(['evaluate', '--calibration', str(tmp_path / 'cal.json'), '--samples', str(kept), '--out', str(ev), '--quiet'], capsys)
    assert status == 0 and f'to {ev}' in out
    assert sorted(p.name for p in ev.iterdir()) == sorted(['table.csv', 'table.md', 'evaluation.json', 'risk.png', 'examples.png'])
    assert len(json.loads((ev / 'evaluation.json').read_text())) == 18 * 2

def test_console_script_exit_status(tmp_path):
    "The installed entry point: the message on stderr and the status reach the shell."
    r = subprocess.run([sys.executable, '-c', 'from conformal_superres.cli.main import main; main()', 'predict', '--calibration',
                        str(tmp_path / 'none.json'), str(tmp_path / 'x.png')], capture_output=True, text=True)
    assert r.returncode == 3 and r.stderr.startswith('conformal-superres: error: ') and 'Traceback' not in r.stderr, r.stderr

def test_large_input_warned_before_work(setup, capsys, tmp_path):
    "An input that is already large: its output size is said before any model is built (here the model then cannot be)."
    root, _, _ = setup
    big = tmp_path / 'big.png'; Image.new('RGB', (1920, 1080)).save(big)
    status, _, err = run(['predict', '--calibration', str(root / 'cal.json'), str(big), '--model', 'sinsr', '--out', str(tmp_path / 'o')], capsys)
    warning, error = err.rstrip().split('\n')
    assert status == 2 and error.startswith('conformal-superres: error: --model sinsr needs --checkpoint'), err
    assert warning.startswith('conformal-superres: warning: ') and 'is already 1920x1080 px (2.1 MP); x4 makes 7680x4320 px (33 MP' in warning, err
    assert not (tmp_path / 'o').exists()

def test_predict_at_an_empty_level_says_so(setup, capsys, tmp_path):
    root, _, small = setup
    doc = json.loads((root / 'cal.json').read_text()); doc['limits'][0]['limit'] = '-inf'   # alpha 0.5: feasible, yet empty
    (tmp_path / 'c.json').write_text(json.dumps(doc))
    status, out, err = run(['predict', '--calibration', str(tmp_path / 'c.json'), str(small), '--alpha', '0.5', '--out', str(tmp_path / 'o'), '--quiet'], capsys)
    assert status == 0 and 'conformal-superres: warning: alpha=0.5 has the limit r* = -inf' in err and 'no pixel will be trusted' in err, err
    assert np.array(Image.open(tmp_path / 'o' / 'small_mask.png')).max() == 0 and '0.0% of pixels trusted' in out
