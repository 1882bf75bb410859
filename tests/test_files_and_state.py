"""Faults injected where files are written and where the model answers: a full disk (a real file-size limit in a
child process, or a patched writer), kill -9 of a real child process mid-write, two processes racing on one new
output, a model failing on its k-th call, answering on another device or with another size. Each test asserts
what is on disk afterwards, byte for byte where it must be unchanged, and what the objects hold."""
import errno, json, os, signal, stat, subprocess, sys, textwrap, time, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conformal_superres.at_scale import calibrator_at_scale, folder_items
from conformal_superres.data.images import OutputError, encode_image, write_atomic, write_files, write_folder, check_not_input
from conformal_superres.fidelity import Neighbourhood
from conformal_superres.mask import ConformalMask, CalibrationFileError, read_calibration
from conformal_superres.uncertainty import Uncertainty

ROOT = Path(__file__).resolve().parent.parent


class NoisyBicubic:
    "x4 bicubic plus Gaussian noise whose size follows the local contrast: a generative model in the package's sense."
    scale, name = 4, 'noisy-bicubic'
    def __init__(self): self.calls = 0
    def __call__(self, lr, generator=None):
        self.calls += 1
        up = F.interpolate(lr, scale_factor=4, mode='bicubic', align_corners=False)
        local = (up - F.avg_pool2d(up, 5, 1, 2, count_include_pad=False)).abs()
        return (up + (0.02 + local) * torch.randn(up.shape, generator=generator, dtype=up.dtype)).clamp(0, 1)


class FailsAt(NoisyBicubic):
    "The same model, whose server goes away at its k-th call."
    def __init__(self, k): super().__init__(); self.k = k
    def __call__(self, lr, generator=None):
        if self.calls + 1 == self.k: raise ConnectionError(f"model server went away at call {self.k}")
        return super().__call__(lr, generator)


def pairs(n, seed=0, h=8, w=10):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        hr = (F.interpolate(torch.rand(1, 3, h, w, generator=g), scale_factor=4, mode='bilinear')[0]
              + 0.15 * torch.rand(3, 4 * h, 4 * w, generator=g)).clamp(0, 1)
        out.append((F.avg_pool2d(hr[None], 4)[0], hr))
    return out


def mask_of(model): return ConformalMask(model, Uncertainty(kernel='box:3'), Neighbourhood('box:3'), n_samples=4, seed=3)


def state(cm):
    "Everything a calibration sets, as plain values."
    recs = None if cm.calibrator is None else [(r.sigma.tolist(), r.loss.tolist()) for r in cm.calibrator.records]
    return dict(limits=dict(cm.limits), guarantee=dict(cm.guarantee), n=cm.n, config=cm.config(), records=recs)


# --- transactions -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('k', [1, 5, 23])
def test_failed_calibration_leaves_the_old_one_intact(tmp_path, k):
    "A high-probability calibration whose model fails on its k-th call: the object and its saved file are as before."
    model = FailsAt(10 ** 9)
    cm = mask_of(model)
    cm.calibrate(pairs(12), (0.1, 0.3), progress=False)
    before, saved = state(cm), cm.save(tmp_path / 'a.json').read_bytes()
    model.calls, model.k = 0, k
    with pytest.raises(ConnectionError):
        cm.calibrate(pairs(12, seed=1), (0.1, 0.3), progress=False, guarantee='high-probability', delta=0.05)
    assert state(cm) == before
    assert cm.save(tmp_path / 'b.json').read_bytes() == saved
    assert json.loads(saved)['config']['guarantee'] == {'kind': 'expected', 'delta': None}


def test_failed_calibration_through_the_store_leaves_the_old_one_intact(tmp_path):
    model = FailsAt(10 ** 9)
    cm = mask_of(model)
    cm.calibrate(pairs(6), (0.3,), progress=False)
    before = state(cm)
    model.calls, model.k = 0, 9
    with pytest.raises(ConnectionError):
        cm.calibrate(pairs(6, seed=2), (0.3,), progress=False, store=tmp_path / 'store', guarantee='high-probability', delta=0.1)
    assert state(cm) == before


def test_bad_alpha_is_refused_before_any_model_call():
    model = NoisyBicubic()
    cm = mask_of(model)
    for bad in (5.0, np.float64(5.0), 0.0, float('nan'), -1):
        with pytest.raises(ValueError) as e: cm.calibrate(pairs(3), (0.1, bad), progress=False)
        assert 'np.float64' not in str(e.value) and '\n' not in str(e.value) and 'outside (0, B=3]' in str(e.value)
    with pytest.raises(ValueError, match='delta must lie in'): cm.calibrate(pairs(3), (0.1,), guarantee='high-probability', delta=1.5)
    assert model.calls == 0 and cm.limits == {} and cm.calibrator is None


def test_failed_load_leaves_the_object_intact(tmp_path):
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(8), (0.3,), progress=False)
    other = ConformalMask(NoisyBicubic(), Uncertainty(kernel='box:3'), Neighbourhood('box:3'), n_samples=5, seed=3)
    other.calibrate(pairs(8), (0.5,), progress=False)
    f = other.save(tmp_path / 'other.json')
    before = state(cm)
    with pytest.raises(ValueError) as e: cm.load(f)
    assert '\n' not in str(e.value) and 'n_samples: file has 5, this ConformalMask has 4' in str(e.value)
    assert state(cm) == before


# --- the writer -----------------------------------------------------------------------------------------------------

def _run_child(code:str, **kw)->subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120, **kw)


def test_save_on_a_full_disk_keeps_the_old_file(tmp_path):
    "A real limit on file size in a child process (writes past it fail, as on a full disk): the old file stays, byte for byte."
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(8), (0.4, 0.5, 0.7, 1.0, 1.5), progress=False)
    f = cm.save(tmp_path / 'calibration.json'); old = f.read_bytes()
    r = _run_child(f"""
        import resource, signal, torch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from conformal_superres.mask import ConformalMask
        from tests.test_files_and_state import NoisyBicubic, mask_of, pairs
        cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(9, seed=4), (0.4, 0.5, 0.7, 1.0, 1.5), progress=False)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try: cm.save({str(f)!r})
        except OSError as e: print('refused:', e)
        """, cwd=ROOT)
    assert 'refused:' in r.stdout, r.stdout + r.stderr
    assert f.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['calibration.json']


def test_full_disk_on_the_last_of_several_files_changes_none(tmp_path, monkeypatch):
    (tmp_path / 'table.md').write_bytes(b'old table'); (tmp_path / 'figure.png').write_bytes(b'old figure')
    def full(p): raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(OutputError, match='No space left'):
        write_files({tmp_path / 'table.md': b'new table', tmp_path / 'new.csv': b'new', tmp_path / 'figure.png': full})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {'table.md': b'old table', 'figure.png': b'old figure'}


def test_written_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        for p in write_files({tmp_path / 'a.png': b'x', tmp_path / 'b.png': lambda t: Path(t).write_bytes(b'y')}):
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, oct(p.stat().st_mode)
        cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(4), (1.0,), progress=False, store=tmp_path / 'store')
        for p in [cm.save(tmp_path / 'c.json'), *(tmp_path / 'store').rglob('*.*')]:
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, (p, oct(p.stat().st_mode))
        d = write_folder(tmp_path / 'report', {'t.md': b't'})
        assert stat.S_IMODE(d.stat().st_mode) == 0o755
    finally: os.umask(old)


def test_kill_9_mid_write_leaves_the_old_file(tmp_path):
    "A real child killed with SIGKILL while it writes the new file: the old one is there, byte for byte."
    target = tmp_path / 'calibration.json'; target.write_bytes(b'the old calibration\n' * 50); old = target.read_bytes()
    started = tmp_path / 'started'
    child = subprocess.Popen([sys.executable, '-c', textwrap.dedent(f"""
        import time
        from pathlib import Path
        from conformal_superres.data.images import write_atomic
        def slow(tmp):
            with open(tmp, 'wb') as f:
                f.write(b'half of the new one'); f.flush(); Path({str(started)!r}).touch(); time.sleep(60)
        write_atomic({str(target)!r}, slow)
        """)], env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        for _ in range(600):
            if started.exists(): break
            time.sleep(0.05)
        assert started.exists()
        child.send_signal(signal.SIGKILL); child.wait(30)
    finally:
        if child.poll() is None: child.kill()
    assert target.read_bytes() == old
    assert all(p.name.startswith('.') for p in tmp_path.iterdir() if p.name not in ('calibration.json', 'started'))


def test_two_processes_racing_on_one_new_output(tmp_path):
    "Started together on the same new file with exclusive creation: one wins, the other gets 'exists'; the file is the winner's."
    target, go = tmp_path / 'calibration.json', tmp_path / 'go'
    code = f"""
        import sys, time
        from pathlib import Path
        from conformal_superres.data.images import write_atomic, OutputError
        while not Path({str(go)!r}).exists(): time.sleep(0.001)
        try: write_atomic({str(target)!r}, (sys.argv[1] * 1000).encode(), exclusive=True); print('won')
        except OutputError as e: print('lost:', e)
        """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), w], env=env, stdout=subprocess.PIPE, text=True) for w in 'AB']
    time.sleep(1.5); go.touch()
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(o.split(':')[0] for o in outs) == ['lost', 'won'], outs
    winner = 'AB'[[o == 'won' for o in outs].index(True)]
    assert target.read_bytes() == (winner * 1000).encode()
    assert 'exists' in [o for o in outs if o != 'won'][0]


def test_exclusive_save_refuses_an_existing_file(tmp_path):
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(4), (1.0,), progress=False)
    f = tmp_path / 'c.json'; f.write_bytes(b'someone else\'s')
    with pytest.raises(OutputError, match='exists'): cm.save(f, exclusive=True)
    assert f.read_bytes() == b'someone else\'s'


def test_report_folder_appears_whole_or_not_at_all(tmp_path):
    rep = write_folder(tmp_path / 'report', {'a.csv': b'1', 'b.png': b'2', 'c.md': b'3'})
    old = {p.name: p.read_bytes() for p in rep.iterdir()}
    def full(p): raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(OutputError):
        write_folder(rep, {'a.csv': b'new', 'b.png': b'new', 'c.md': full}, overwrite=True)
    assert {p.name: p.read_bytes() for p in rep.iterdir()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['report']


def test_an_output_that_is_an_input_is_refused(tmp_path):
    a = tmp_path / 'photo_mask.png'; a.write_bytes(b'input')
    with pytest.raises(OutputError, match='is the input'): check_not_input([tmp_path / '.' / 'photo_mask.png'], [a])


# --- calibration files ----------------------------------------------------------------------------------------------

def test_calibration_file_size_limit_names_itself(tmp_path, monkeypatch):
    import conformal_superres.mask as mask
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(4), (1.0,), progress=False)
    f = cm.save(tmp_path / 'c.json')
    monkeypatch.setattr(mask, 'MAX_CALIBRATION_BYTES', 100)
    with pytest.raises(CalibrationFileError, match='MAX_CALIBRATION_BYTES'): read_calibration(f)


def test_many_levels_validated_with_duplicates_found(tmp_path):
    "20,000 levels load (sorted once, neighbours compared); a duplicate anywhere among them is still found."
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(30), (0.5,), progress=False)
    alphas = np.linspace(0.2, 2.9, 20000)
    cm.limits = {float(a): float(r) for a, r in zip(alphas, cm.calibrator.limits(alphas))}
    f = cm.save(tmp_path / 'c.json')
    assert len(ConformalMask(NoisyBicubic(), Uncertainty(kernel='box:3'), Neighbourhood('box:3'), n_samples=4).load(f).limits) == 20000
    doc = json.loads(f.read_text()); doc['limits'].insert(7, dict(doc['limits'][15000])); f.write_text(json.dumps(doc))
    with pytest.raises(CalibrationFileError, match='appears twice'): read_calibration(f)


def test_saved_calibration_is_strict_json(tmp_path):
    cm = mask_of(NoisyBicubic())
    with pytest.warns(UserWarning, match='mask is empty'): cm.calibrate(pairs(4), (0.1, 2.9), progress=False)   # limit -inf
    text = cm.save(tmp_path / 'c.json').read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f'non-standard JSON constant {c}'))


# --- records that know what they describe ---------------------------------------------------------------------------

def _write_folder_of(folder:Path, items):
    folder.mkdir()
    for i, (_, hr) in enumerate(items): (folder / f'img{i}.png').write_bytes(encode_image(hr))
    return folder


def test_store_does_not_answer_for_other_images(tmp_path):
    "Folder B with A's file names, calibrated on A's store: B's own limits, never A's; the same after an edit in place."
    smooth = [(lr, F.avg_pool2d(hr[None], 3, 1, 1)[0]) for lr, hr in pairs(10, seed=5)]
    rough = pairs(10, seed=6)
    a, b = _write_folder_of(tmp_path / 'A', smooth), _write_folder_of(tmp_path / 'B', rough)
    alphas = (0.3, 0.6, 1.0)
    fresh = mask_of(NoisyBicubic()).calibrate(folder_items(b), alphas, progress=False, engine='local')
    stored = mask_of(NoisyBicubic()); stored.calibrate(folder_items(a), alphas, progress=False, store=tmp_path / 'S')
    assert stored.limits != fresh                   # the two folders differ: a reused record would show
    cm = mask_of(NoisyBicubic())
    with pytest.warns(UserWarning, match='computed again'):
        got = cm.calibrate(folder_items(b), alphas, progress=False, store=tmp_path / 'S')
    assert got == fresh
    (b / 'img3.png').write_bytes(encode_image(smooth[3][1]))   # one photo edited in place
    edited = mask_of(NoisyBicubic()).calibrate(folder_items(b), alphas, progress=False, engine='local')
    model = NoisyBicubic()
    with pytest.warns(UserWarning, match='1 of the records'):
        again = mask_of(model).calibrate(folder_items(b), alphas, progress=False, store=tmp_path / 'S')
    assert again == edited and model.calls == 4     # only the edited image was sampled again (M=4 single draws)


def test_store_checks_crop_settings(tmp_path):
    "The same pixels made under other settings (another crop or degradation) are another item."
    from conformal_superres.at_scale import RecordStore, run_config, item_digest
    lr, hr = pairs(1)[0]
    assert item_digest(lr[None], hr[None], None, dict(crop=96)) != item_digest(lr[None], hr[None], None, dict(crop=64))
    assert item_digest(lr[None], hr[None]) != item_digest(lr[None], hr.flip(-1)[None])


# --- the boundary of the model --------------------------------------------------------------------------------------

class Faulty(NoisyBicubic):
    "Right on its first call; from its k-th call on: samples on another device, of another size, or NaN."
    def __init__(self, fault, k=2): super().__init__(); self.fault, self.k = fault, k
    def __call__(self, lr, generator=None):
        y = super().__call__(lr, generator)
        if self.calls < self.k: return y
        if self.fault == 'device': return torch.empty(y.shape, device='meta')
        if self.fault == 'size': return y[..., :-4, :]
        return y * float('nan')


@pytest.mark.parametrize('fault,message', [('device', 'call 3 returned samples on meta, call 1 on cpu'),
                                           ('size', 'call 3 returned samples of 28x40 pixels, call 1 of 32x40'),
                                           ('nan', 'call 3 returned samples with NaN')])
def test_model_faults_are_named_with_the_call(tmp_path, fault, message):
    cm = mask_of(NoisyBicubic()); cm.calibrate(pairs(6), (0.5,), progress=False)
    f = cm.save(tmp_path / 'c.json'); old = f.read_bytes(); before = state(cm)
    bad = ConformalMask.from_file(f, Faulty(fault, k=3))
    bad.model.name = 'noisy-bicubic'
    with pytest.raises(ValueError) as e: bad.calibrate(pairs(3), (0.5,), progress=False)
    assert message in str(e.value) and "'noisy-bicubic'" in str(e.value) and '\n' not in str(e.value)
    bad.model.calls = 0
    with pytest.raises(ValueError, match='call 3'): bad.predict(pairs(1)[0][0], 0.5)
    assert f.read_bytes() == old and state(cm) == before


# --- the Ray engine's own cluster -----------------------------------------------------------------------------------

def test_local_ray_cluster_is_private_and_on_loopback(monkeypatch):
    "Without an address the engine starts its own cluster (never one recorded on the machine), listening on loopback."
    import conformal_superres.at_scale as at_scale
    seen = {}
    class Stop(Exception): pass
    class FakeRay:
        def is_initialized(self): return False
        def init(self, **kw): seen.update(kw); raise Stop
    monkeypatch.setattr(at_scale, '_ray', lambda: FakeRay())
    with pytest.raises(Stop): list(at_scale._ray_records(None, {'a': None}, ['a'], None, 1, None))
    assert seen['address'] == 'local' and seen['_node_ip_address'] == '127.0.0.1'


# --- the command line -----------------------------------------------------------------------------------------------

FAST = ['--model', 'bicubic-perturbed', '--crop', '32', '--crops-per-image', '6', '-M', '3', '--quiet']


@pytest.fixture(scope='module')
def cli_setup(tmp_path_factory):
    from PIL import Image
    from conformal_superres.cli.main import main
    root = tmp_path_factory.mktemp('cli-faults')
    rng = np.random.default_rng(0)
    photos = root / 'photos'; photos.mkdir()
    for name in 'abc': Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(photos / f'{name}.png')
    try: main(['calibrate', '--data', str(photos), *FAST, '--alphas', '0.5,1', '--out', str(root / 'cal.json')])
    except SystemExit as e: assert not e.code
    return root, photos


def _cli(argv, capsys):
    from conformal_superres.cli.main import main
    try: main(argv); code = 0
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder:Path)->dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_predict_refuses_an_output_that_is_an_input(cli_setup, tmp_path, capsys):
    "predict --overwrite photo.png photo_mask.png --out their folder: photo_mask.png is an input, so nothing is done."
    root, photos = cli_setup
    d = tmp_path / 'in'; d.mkdir()
    for n in ('photo.png', 'photo_mask.png'): (d / n).write_bytes((photos / 'a.png').read_bytes())
    before = snapshot(d)
    code, _, err = _cli(['predict', '--calibration', str(root / 'cal.json'), str(d / 'photo.png'), str(d / 'photo_mask.png'),
                         '--out', str(d), '--overwrite', '--quiet'], capsys)
    assert code == 4 and 'is the input' in err and err.count('\n') == 1
    assert snapshot(d) == before


def test_predict_checks_values_before_the_first_output(cli_setup, tmp_path, capsys):
    "A float TIFF in [0, 255] after a good image: refused before the good image's files are written."
    import tifffile
    root, photos = cli_setup
    bad = tmp_path / 'bad.tif'; tifffile.imwrite(bad, (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.float32))
    out = tmp_path / 'out'
    code, _, err = _cli(['predict', '--calibration', str(root / 'cal.json'), str(photos / 'a.png'), str(bad), '--out', str(out), '--quiet'], capsys)
    assert code == 3 and 'values in [0,1]' in err
    assert not out.exists() or not any(out.iterdir())


def test_predict_refuses_outputs_that_cannot_fit_in_memory(cli_setup, tmp_path, capsys, monkeypatch):
    import conformal_superres.cli.commands as commands
    root, photos = cli_setup
    monkeypatch.setattr(commands, 'available_memory', lambda: 1 << 20)   # a machine with 1 MiB to spare
    code, _, err = _cli(['predict', '--calibration', str(root / 'cal.json'), str(photos / 'a.png'), '--out', str(tmp_path / 'o'), '--quiet'], capsys)
    assert code == 3 and 'GiB of memory' in err and 'downscale' in err
    assert not (tmp_path / 'o').exists()


def test_evaluate_on_a_full_disk_keeps_the_old_report(cli_setup, tmp_path, capsys, monkeypatch):
    "evaluate --overwrite whose last picture cannot be written: the five old files as they were, no new one beside them."
    import conformal_superres.data.images as images
    root, photos = cli_setup
    rep = tmp_path / 'report'
    argv = ['evaluate', '--calibration', str(root / 'cal.json'), '--data', str(photos), '--crop', '32', '--crops-per-image', '3',
            '--out', str(rep), '--quiet']
    assert _cli(argv, capsys)[0] == 0
    before = snapshot(rep)
    real = images._stage
    def full(path, data):
        if path.name == 'examples.png': raise OSError(errno.ENOSPC, 'No space left on device')
        return real(path, data)
    monkeypatch.setattr(images, '_stage', full)
    code, _, err = _cli(argv + ['--overwrite', '--seed', '3'], capsys)
    assert code == 4 and 'No space left' in err
    assert snapshot(rep) == before
    json.loads((rep / 'evaluation.json').read_text(), parse_constant=lambda c: pytest.fail(f'non-standard JSON constant {c}'))


def test_two_calibrate_runs_on_one_new_output(cli_setup, tmp_path):
    "Two calibrate processes started together on the same new --out, without --overwrite: one writes it, the other exits 4."
    root, photos = cli_setup
    out, go = tmp_path / 'cal.json', tmp_path / 'go'
    code = f"""
        import sys, time
        from pathlib import Path
        from conformal_superres.cli.main import main
        import conformal_superres.mask as mask
        save = mask.ConformalMask.save
        def held(self, path, exclusive=False):   # both runs reach the write together
            while not Path({str(go)!r}).exists(): time.sleep(0.001)
            return save(self, path, exclusive=exclusive)
        mask.ConformalMask.save = held
        main(['calibrate', '--data', {str(photos)!r}, *{FAST!r}, '--alphas', sys.argv[1], '--out', {str(out)!r}])
        """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), a], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for a in ('0.5', '0.7')]
    time.sleep(2); go.touch()
    res = [(p.wait(180), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in res) == [0, 4], res
    loser = [r for r in res if r[0] == 4][0]
    assert 'exists' in loser[2]
    winner_alpha = '0.5' if res[0][0] == 0 else '0.7'
    assert [d['alpha'] for d in json.loads(out.read_text())['limits']] == [float(winner_alpha)]


def test_sigterm_during_predict_cleans_up_with_one_message(cli_setup, tmp_path):
    "SIGTERM (a batch scheduler's stop) of a real predict process: no hidden .part file, one message, exit status 143."
    root, photos = cli_setup
    out, started = tmp_path / 'out', tmp_path / 'started'
    code = f"""
        import os, time
        from pathlib import Path
        from conformal_superres.cli.main import main
        real = os.fsync
        def slow(fd):                            # a slow disk: stopped while the first output file is flushed
            Path({str(started)!r}).touch(); time.sleep(60); return real(fd)
        os.fsync = slow
        main(['predict', '--calibration', {str(root / 'cal.json')!r}, {str(photos / 'a.png')!r}, '--out', {str(out)!r}, '--quiet'])
        """
    child = subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if started.exists() or child.poll() is not None: break
            time.sleep(0.05)
        assert started.exists(), child.communicate()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None: child.kill()
    assert child.returncode == 143, err
    assert err.strip().count('\n') == 0 and 'terminated (SIGTERM)' in err
    assert [p.name for p in out.rglob('*')] == []
