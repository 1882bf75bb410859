"Tests of conformal_superres.models.adapters: output normalisation, the flaky callable, a fake HTTP service, sample folders, the perturbation wrapper."
import http.server, io, threading, time
from contextlib import contextmanager
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conformal_superres.data.pairs import degrade
from conformal_superres.data.images import encode_image, load_image
from conformal_superres.models.adapters import SHIFT_METHODS, CallableModel, FolderSamples, HTTPModel, ModelCallError, ModelOutputError, PerturbedModel, as_model, bicubic_model, normalise_output, subpixel_shift
from conformal_superres.protocol import SRModel, draw_samples


def nearest(lr, s=4): return lr.repeat_interleave(s, -2).repeat_interleave(s, -1)


# ---------------------------------------------------------------- normalisation
def test_output_conventions():
    lr = torch.rand(2, 3, 3, 5, dtype=torch.float64)
    hr = torch.rand(2, 3, 12, 20)
    u8 = (hr * 255).round().byte()
    ref8 = u8.double() / 255
    hwc = u8.permute(0, 2, 3, 1).numpy()
    u16 = np.random.default_rng(0).integers(0, 65536, (2, 12, 20, 3), dtype=np.uint16)
    cases = {'tensor u8': (u8, ref8), 'tensor float': (hr, hr.double()), 'numpy BHWC u8': (hwc, ref8),
             'list numpy HWC': (list(hwc), ref8), 'list PIL': ([Image.fromarray(a) for a in hwc], ref8),
             'list PNG bytes': ([encode_image(x, 'PNG') for x in hr], ref8),
             'numpy u16': (u16, torch.from_numpy(u16.astype(np.float64) / 65535).permute(0, 3, 1, 2)),
             'numpy float': (hr.permute(0, 2, 3, 1).numpy(), hr.double())}
    for name, (out, ref) in cases.items():
        got = normalise_output(out, lr, 4)
        assert got.dtype == torch.float64 and got.shape == (2, 3, 12, 20), name
        assert (got - ref).abs().max() < 1e-6, name
    one = normalise_output(hr[0], lr[:1], 4)
    assert one.shape == (1, 3, 12, 20)


@pytest.mark.parametrize('out,match', [
    (torch.rand(2, 3, 12, 16), r'expected \(2, 3, 12, 20\)'),
    (torch.rand(2, 3, 6, 10), 'looks like scale 2'),
    (torch.rand(2, 12, 20, 3), 'channels first'),
    (np.zeros((2, 3, 12, 20), np.uint8), 'channels last'),
    (torch.ones(2, 3, 12, 20, dtype=torch.int32), 'dtype'),
    (torch.full((2, 3, 12, 20), float('nan')), 'NaN'),
    (torch.rand(2, 3, 12, 20) * 2 - 1, r'\[-1,1\]'),
    (torch.rand(2, 3, 12, 20) + 0.01, 'outside'),
    ([torch.rand(3, 12, 20), torch.rand(3, 12, 16)], 'different sizes'),
    ({'image': 1}, 'cannot use dict'),
    (b'not an image', 'cannot read'),
])
def test_invalid_outputs_are_refused(out, match):
    with pytest.raises((ModelOutputError, ValueError), match=match):
        normalise_output(out, torch.rand(2, 3, 3, 5), 4)


# ---------------------------------------------------------------- callable with retries
def flaky_model(p_fail, seed, calls):
    "Sleeps a little, draws noise from the generator, fails with probability p_fail (seeded), else nearest x4 + noise."
    coin = np.random.default_rng(seed)
    def fn(lr, generator):
        calls.append(1)
        time.sleep(0.001)
        noise = 0.05 * torch.randn(lr.shape, generator=generator)
        if coin.random() < p_fail: raise ConnectionResetError('connection reset by peer')
        return nearest((lr + noise).clamp(0, 1))
    return fn


def test_flaky_callable_gives_the_clean_samples():
    lr = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    calls, waits = [], []
    flaky = CallableModel(flaky_model(0.4, 1, calls), 4, retries=8, backoff=0.01, sleep=waits.append)
    clean = CallableModel(flaky_model(0.0, 1, []), 4)
    for seed in range(15):
        assert torch.equal(flaky(lr, torch.Generator().manual_seed(seed)), clean(lr, torch.Generator().manual_seed(seed)))
    assert len(calls) > 15 and len(waits) == len(calls) - 15                      # some calls failed and were retried
    assert set(waits) <= {0.01 * 2 ** k for k in range(8)}
    s = flaky.sample(lr, 5, torch.Generator().manual_seed(3))
    assert s.shape == (5, 3, 3, 24, 24) and torch.equal(s, clean.sample(lr, 5, torch.Generator().manual_seed(3)))
    assert not torch.equal(s[0], s[1])


def test_failure_after_the_last_attempt():
    calls = []
    always = CallableModel(flaky_model(1.0, 0, calls), 4, retries=3, backoff=0.0)
    with pytest.raises(ModelCallError, match='failed after 4 attempts; last error: ConnectionResetError: connection reset') as e:
        always(torch.rand(1, 3, 2, 2), torch.Generator())
    assert len(calls) == 4 and isinstance(e.value.__cause__, ConnectionResetError)
    once = CallableModel(flaky_model(1.0, 0, []), 4, retries=0)
    with pytest.raises(ModelCallError, match='failed after 1 attempt;'): once(torch.rand(1, 3, 2, 2))


def test_invalid_output_is_not_retried():
    calls = []
    def wrong(lr):
        calls.append(1); return nearest(lr, 2)
    with pytest.raises(ModelOutputError, match='looks like scale 2'): CallableModel(wrong, 4, retries=5, backoff=0)(torch.rand(1, 3, 4, 4))
    assert len(calls) == 1


def test_timeout_counts_as_failure():
    waits = []
    state = {'n': 0}
    def slow_then_fast(lr):
        state['n'] += 1
        if state['n'] == 1: time.sleep(0.3)
        return nearest(lr)
    m = CallableModel(slow_then_fast, 4, retries=1, backoff=0.05, timeout=0.05, sleep=waits.append)
    assert m(torch.rand(1, 3, 2, 2)).shape == (1, 3, 8, 8) and waits == [0.05]
    time.sleep(0.3)   # let the abandoned call finish


def test_generator_detection_and_no_grad():
    seen = {}
    def det(lr): seen['grad'] = torch.is_grad_enabled(); return nearest(lr)
    def rand(lr, generator): return nearest(lr)
    assert not CallableModel(det, 4).takes_generator and CallableModel(rand, 4).takes_generator
    CallableModel(det, 4, timeout=1.0)(torch.rand(1, 3, 2, 2)); assert seen['grad'] is False   # also in the helper thread
    class Net(torch.nn.Module):
        scale = 2
        def forward(self, x): return nearest(x, 2)
    m = as_model(Net())
    assert isinstance(m, CallableModel) and not m.takes_generator and m(torch.rand(1, 3, 2, 2)).shape == (1, 3, 4, 4)


# ---------------------------------------------------------------- HTTP
@contextmanager
def fake_service(p_503=0.3, seed=0, max_requests=200, answer=None):
    "A local SR service on 127.0.0.1: nearest x(X-Scale) + noise seeded by X-Seed; 503 at random; bounded; shut down at exit."
    coin, log = np.random.default_rng(seed), {'n': 0, 'failed': 0, 'seeds': []}
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args): pass
        def do_POST(self):
            log['n'] += 1
            body = self.rfile.read(int(self.headers['Content-Length']))
            if log['n'] > max_requests or coin.random() < p_503:
                log['failed'] += 1; self.send_response(503); self.end_headers(); return
            if answer is not None:
                code, payload = answer
                self.send_response(code); self.send_header('Content-Type', 'text/plain'); self.end_headers()
                self.wfile.write(payload); return
            assert self.headers['Content-Type'] == 'image/png'
            log['seeds'].append(int(self.headers['X-Seed']))
            lr, s = load_image(body), int(self.headers['X-Scale'])
            g = torch.Generator().manual_seed(int(self.headers['X-Seed']))
            hr = nearest(lr, s) + 0.05 * torch.randn(3, lr.shape[1] * s, lr.shape[2] * s, generator=g)
            png = encode_image(hr.clamp(0, 1), 'PNG')
            self.send_response(200); self.send_header('Content-Type', 'image/png')
            self.send_header('Content-Length', str(len(png))); self.end_headers(); self.wfile.write(png)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try: yield f'http://127.0.0.1:{server.server_address[1]}/sr', log
    finally:
        server.shutdown(); server.server_close(); thread.join(5)
        assert not thread.is_alive()


def test_http_model_retries_and_is_reproducible():
    lr = (torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(0)) * 255).round() / 255   # exact in 8-bit PNG
    with fake_service(p_503=0.3, seed=2, max_requests=200) as (url, log):
        api = HTTPModel(url, 4, retries=10, backoff=0.001)
        a = api(lr, torch.Generator().manual_seed(0))
        b = api(lr, torch.Generator().manual_seed(0))
        c = api.sample(lr, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and c.shape == (3, 2, 3, 20, 24)
    assert (a - c[0]).abs().max() > 0.05 and (c[0] - c[1]).abs().max() > 0.05
    assert log['failed'] > 0 and log['n'] == log['failed'] + 2 + 2 + 6 and log['n'] <= 200
    assert log['seeds'][:2] == torch.randint(0, 2**31 - 1, (2,), generator=torch.Generator().manual_seed(0)).tolist()
    # the service's answer is the nearest upsampling plus its noise: the image went through intact
    assert (a - nearest(lr)).abs().mean() < 0.06


def test_http_errors():
    lr = torch.rand(1, 3, 4, 4)
    with fake_service(p_503=1.0, max_requests=20) as (url, log):
        with pytest.raises(ModelCallError, match=r'failed after 3 attempts; last error: HTTPError: HTTP Error 503'):
            HTTPModel(url, 4, retries=2, backoff=0.001)(lr, torch.Generator())
        assert log['n'] == 3
    with fake_service(p_503=0.0, answer=(400, b'bad request')) as (url, log):
        with pytest.raises(ModelCallError, match='failed after 1 attempt; last error: HTTPError: HTTP Error 400'):
            HTTPModel(url, 4, retries=5, backoff=0.001)(lr, torch.Generator())
        assert log['n'] == 1                                          # client errors are not retried
    with fake_service(p_503=0.0, answer=(200, b'{"error": "quota"}')) as (url, log):
        with pytest.raises(ModelOutputError, match='not an image'):
            HTTPModel(url, 4, retries=5, backoff=0.001)(lr, torch.Generator())
    with pytest.raises(ModelCallError, match='URLError|ConnectionRefused'):
        HTTPModel('http://127.0.0.1:9/none', 4, retries=1, backoff=0.001, timeout=2)(lr, torch.Generator())


def test_http_timeout_bounds_the_whole_request():
    "A server that trickles its answer (one byte every 50 ms) is cut off at the deadline, on the calling thread."
    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers['Content-Length']))
            self.send_response(200); self.send_header('Content-Type', 'image/png'); self.end_headers()
            try:
                for _ in range(200): self.wfile.write(b'x'); self.wfile.flush(); time.sleep(0.05)
            except OSError: pass                                         # the client hung up: what we want
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Trickle)
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    try:
        before = threading.active_count()
        t0 = time.monotonic()
        with pytest.raises(ModelCallError, match='TimeoutError: no complete answer .* within 0.3 s'):
            HTTPModel(f'http://127.0.0.1:{srv.server_address[1]}/sr', 4, retries=0, timeout=0.3)(torch.rand(1, 3, 4, 4), torch.Generator())
        took = time.monotonic() - t0
        assert took < 2.0, took                                          # 200 bytes at 50 ms would take 10 s
        time.sleep(0.2)                                                  # the server's handler thread notices the hang-up
        assert threading.active_count() <= before, "a thread of the call is still running"
    finally: srv.shutdown(); srv.server_close()


# ---------------------------------------------------------------- sample folders
def _save(path, img): Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)


@pytest.fixture
def sample_folder(tmp_path):
    g = torch.Generator().manual_seed(0)
    for id, m in (('a', 12), ('b', 3)):
        (tmp_path / 'samples' / id).mkdir(parents=True); (tmp_path / 'ground_truth').mkdir(exist_ok=True)
        _save(tmp_path / 'ground_truth' / f'{id}.png', torch.rand(3, 16, 20, generator=g))
        for k in range(m): _save(tmp_path / 'samples' / id / f'{k}.png', torch.full((3, 16, 20), k / 20))
    return tmp_path


def test_folder_samples(sample_folder):
    fs = FolderSamples(sample_folder)
    assert fs.ids == ['a', 'b'] and len(fs) == 2 and isinstance(fs, SRModel)
    s = fs.samples('a')
    assert s.shape == (12, 3, 16, 20) and torch.allclose(s[:, 0, 0, 0], torch.arange(12) / 20, atol=1 / 255)  # 10 after 9
    pairs = list(fs.pairs())
    assert [p.source_id for p in pairs] == ['a', 'b'] and torch.equal(pairs[0].lr, degrade(pairs[0].hr))
    lr = torch.stack([pairs[0].lr, pairs[1].lr])
    g = torch.Generator()
    first, second = fs.sample(lr, 2, g), fs(lr, g)
    assert torch.equal(first[:, 1], fs.samples('b', 2)) and torch.equal(second[1], fs.samples('b')[2])
    with pytest.raises(ValueError, match="'b' has 3 samples .* 4 requested with this generator"): fs(lr, g)
    assert torch.equal(draw_samples(fs, lr, 3, torch.Generator())[:, 0], fs.samples('a', 3))      # fresh generator: from 0
    assert torch.equal(fs.sample(lr.double(), 1)[0, 0].double(), fs.samples('a', 1)[0].double())   # dtype does not matter
    with pytest.raises(ValueError, match="'b' has 3 samples"): fs.samples('b', 4)
    with pytest.raises(KeyError, match='not one of the 2 images'): fs(torch.rand(1, 3, 4, 5))
    with pytest.raises(KeyError, match="no image 'c'"): fs.samples('c')


def test_folder_samples_decode_each_file_once(sample_folder, monkeypatch):
    import conformal_superres.models.adapters as models
    reads = []
    real = models.load_image
    monkeypatch.setattr(models, 'load_image', lambda f: (reads.append(Path(f).relative_to(sample_folder).as_posix()), real(f))[1])
    fs = FolderSamples(sample_folder)
    pairs = list(fs.pairs())                        # one read of each ground truth: the LR is made from the same decode
    assert sorted(reads) == ['ground_truth/a.png', 'ground_truth/b.png']
    reads.clear()
    lr, g = torch.stack([p.lr for p in pairs]), torch.Generator()
    chunks = [fs.sample(lr, 1, g) for _ in range(3)]   # LR images recognised from the kept LRs; samples read as handed out
    assert sorted(reads) == sorted(f'samples/{id}/{k}.png' for id in 'ab' for k in range(3))
    assert torch.equal(torch.cat(chunks)[:, 0], real_samples := fs.samples('a', 3)) and real_samples.shape[0] == 3
    reads.clear()
    fs.samples('b', 2)                              # a size check against the kept ground-truth shape, no new ground-truth read
    assert reads == ['samples/b/0.png', 'samples/b/1.png']


def test_folder_samples_errors(sample_folder, tmp_path_factory):
    (sample_folder / 'ground_truth' / 'c.png').write_bytes((sample_folder / 'ground_truth' / 'a.png').read_bytes())
    fs = FolderSamples(sample_folder)
    with pytest.raises(FileNotFoundError, match="no samples for 'c'"): fs.samples('c')
    _save(sample_folder / 'samples' / 'b' / '3.png', torch.rand(3, 16, 24))
    with pytest.raises(ValueError, match=r'is \(16, 24\) but ground truth of .b. is \(16, 20\)'): fs.samples('b')
    (sample_folder / 'lr').mkdir()
    _save(sample_folder / 'lr' / 'a.png', torch.rand(3, 8, 10))
    with pytest.raises(ValueError, match='not x4 smaller'): FolderSamples(sample_folder).lr('a')
    assert FolderSamples(sample_folder, scale=2).lr('a').shape == (3, 8, 10)
    with pytest.raises(FileNotFoundError, match='not found'): FolderSamples(sample_folder / 'nope')
    with pytest.raises(FileNotFoundError, match='ground_truth/<id>.png'): FolderSamples(tmp_path_factory.mktemp('empty'))


# ---------------------------------------------------------------- perturbations
def test_subpixel_shift_conventions():
    delta = torch.zeros(1, 1, 1, 16, dtype=torch.float64); delta[..., 5] = 1
    for m in SHIFT_METHODS:
        assert subpixel_shift(delta, 0, 1, m)[0, 0, 0].argmax() == 6, m                      # content moves by +d
        assert subpixel_shift(delta.transpose(-1, -2), 2, 0, m)[0, 0, :, 0].argmax() == 7, m
    x = torch.rand(3, 2, 10, 12, dtype=torch.float64)
    d = torch.tensor([0.0, 1.0, -3.0])
    for m in SHIFT_METHODS:
        out = subpixel_shift(x, d, -d, m)
        assert torch.allclose(out[0], x[0], atol=1e-9)
        assert torch.allclose(out[1, :, 5:, :-5], x[1, :, 4:-1, 1:-4], atol=1e-9)
    yy, xx = torch.meshgrid(torch.arange(48.), torch.arange(48.), indexing='ij')
    wave = lambda x, y: torch.sin(0.25 * x + 0.15 * y) * torch.cos(0.2 * y - 0.05 * x)
    img = wave(xx, yy).double()[None, None]
    for dy, dx in ((0.5, 0.5), (-0.3, 0.8), (2.25, -1.5)):
        got = subpixel_shift(img, dy, dx)[0, 0, 6:-6, 6:-6]
        assert (got - wave(xx - dx, yy - dy)[6:-6, 6:-6]).abs().max() < 0.01
    assert subpixel_shift(torch.rand(1, 3, 1, 1), 0.4, 0.4).shape == (1, 3, 1, 1)           # tiny images work
    with pytest.raises(ValueError, match='method must be'): subpixel_shift(img, 0, 0, 'cubic')


def test_perturbed_model_on_bicubic():
    bic = bicubic_model(4)
    lr = torch.rand(3, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    pm = PerturbedModel(bic)
    a, b = pm.sample(lr, 4, torch.Generator().manual_seed(1)), pm.sample(lr, 4, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 3, 40, 48) and torch.equal(a, b)
    assert all((a[i] - a[j]).abs().max() > 1e-3 for i in range(4) for j in range(i))
    assert not torch.equal(a, pm.sample(lr, 4, torch.Generator().manual_seed(2)))
    assert torch.equal(PerturbedModel(bic, noise=0, shift=0, flips=False)(lr, torch.Generator()), bic(lr))
    flips_only = PerturbedModel(bic, noise=0, shift=0, flips=True)
    for s in range(5): assert torch.allclose(flips_only(lr, torch.Generator().manual_seed(s)), bic(lr), atol=1e-6)
    # shifts only, on a smooth image: the inverse shift puts the output back where bicubic puts it
    smooth = F.interpolate(torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64),
                           size=(24, 24), mode='bicubic', align_corners=False).clamp(0, 1)
    shifted = PerturbedModel(bic, noise=0, shift=0.5, flips=False).sample(smooth, 3, torch.Generator().manual_seed(0))
    err = (shifted - bic(smooth)).abs()[..., 16:-16, 16:-16]
    assert err.max() < 0.05, float(err.max())     # without the inverse shift: 0.14, with the wrong sign: 0.30
    for m in SHIFT_METHODS:
        out = PerturbedModel(bic, noise=0, shift=0.5, flips=False, shift_method=m)(smooth, torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 96, 96) and (out - bic(smooth)).abs()[..., 16:-16, 16:-16].max() < (0.08 if m == 'bilinear' else 0.05), m


def test_flips_are_applied_and_undone():
    ramp = lambda lr: nearest(lr) * torch.linspace(0.5, 1, lr.shape[-1] * 4)   # not flip-equivariant
    lr = torch.rand(8, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    out = PerturbedModel(ramp, scale=4, noise=0, shift=0, flips=True)(lr, torch.Generator().manual_seed(0))
    ref = ramp(lr)
    flipped = [not torch.allclose(o, r) for o, r in zip(out, ref)]
    assert any(flipped) and not all(flipped)                                   # some images were flipped, some not
    for o, x, f in zip(out, lr, flipped):                                      # and those match flip . fn . flip
        if f: assert any(torch.allclose(o, t(ramp(t(x[None])))[0]) for t in (lambda z: z.flip(-1), lambda z: z.flip(-1).flip(-2)))


def test_perturbed_model_validates():
    with pytest.raises(ValueError, match='needs scale='): PerturbedModel(lambda x: x)
    with pytest.raises(ValueError, match='shift_method'): PerturbedModel(bicubic_model(), shift_method='sinc')
    bad = PerturbedModel(lambda x: nearest(x, 2), scale=4)
    with pytest.raises(ModelOutputError, match='looks like scale 2'): bad(torch.rand(1, 3, 4, 4), torch.Generator())


def test_as_model():
    bic = bicubic_model(2)
    assert as_model(bic) is bic and as_model('bicubic', 3).scale == 3
    assert torch.equal(bic(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 4, 4))
    x = torch.rand(1, 3, 5, 7)
    assert torch.equal(bicubic_model(4)(x), F.interpolate(x, scale_factor=4, mode='bicubic', align_corners=False).clamp(0, 1))
    class Bare:
        scale = 4
        def __call__(self, lr, generator=None): return nearest(lr)
    m = as_model(Bare())
    assert isinstance(m, CallableModel) and m.sample(x, 2).shape == (2, 1, 3, 20, 28)
    with pytest.raises(ValueError, match='needs scale='): as_model(lambda lr: lr)
    with pytest.raises(ValueError, match='has scale 2'): as_model(bic, scale=4)
    with pytest.raises(ValueError, match="knows 'bicubic'"): as_model('esrgan')
    with pytest.raises(TypeError, match='cannot use int'): as_model(3)


def test_with_conformal_mask(sample_folder):
    "The adapters plug into ConformalMask: perturbed bicubic, and a folder of samples."
    from conformal_superres.mask import ConformalMask, summarise
    from conformal_superres.data.photos import bundled_photos
    from conformal_superres.data.pairs import make_pairs
    pairs = make_pairs(bundled_photos('skimage')[:3], 32, 2, seed=0)
    cm = ConformalMask(PerturbedModel(bicubic_model(4)), n_samples=4)
    t = cm.calibrate(pairs, alphas=(0.45,), progress=False)[0.45]   # 0.45 > B/(n+1) = 3/7: a finite threshold
    p = cm.predict(pairs[0].lr, 0.45)
    assert 0 < t < float('inf') and torch.equal(p.mask, p.sigma <= t)
    assert 0 < p.mask.double().mean() < 1            # the perturbations make samples disagree in some places, not all
    s = summarise(cm.evaluate(pairs, (0.45,), progress=False))[0]
    assert s['psnr_masked'] > s['psnr_full'] + 1      # the trusted pixels are the more accurate ones
    fs = FolderSamples(sample_folder)
    cm2 = ConformalMask(fs, n_samples=3, sample_batch=2)
    cm2.calibrate(list(fs.pairs()), alphas=(1.0,), progress=False)   # chunks of 2 then 1: samples 0-1, then 2
    assert cm2.n == 2
    q = cm2.predict(fs.lr('a'), 1.0)                  # a fresh generator: the stored samples 0, 1, 2 of 'a'
    stored = fs.samples('a', 3)
    assert torch.equal(q.prediction, stored[0])
    torch.testing.assert_close(q.sigma, cm2.uncertainty(stored[:, None])[0])
