"The CPU path of the commands: the encoder once per image, in-place sampling, fast PNG files, deferred imports, the thread policy."
import io, json, subprocess, sys
import numpy as np
import pytest
import torch
from PIL import Image
from conformal_superres.models.adapters import bicubic_upsample
from conformal_superres.models.embedded import EmbeddedSR, FlowSRNet, load_embedded


def _reference(model:EmbeddedSR, lr, M:int, g, chunk:int):
    "The samples as first written: `sample` chunk by chunk, the encoder run again for every chunk, every update out of place."
    B, _, h, w = lr.shape
    H, W, K, out = h * model.scale, w * model.scale, model.steps, []
    with torch.enable_grad():                      # the training path: no operation in place
        for d in range(0, M, chunk):
            m = min(chunk, M - d)
            noise = torch.stack([torch.randn((B, 3, H, W), generator=g) for _ in range(m)])
            f = model.net.features(lr).repeat(m, 1, 1, 1)
            r = noise.reshape(-1, 3, H, W)
            for k in range(K):
                r_hat = model.net(r, torch.full((r.shape[0],), k / K), f)
                r = r + (r_hat - r) / (K - k)
            s = bicubic_upsample(lr, model.scale)[None] + model.net.res_scale * r.reshape(m, B, 3, H, W)
            out.append(s.clamp(0, 1).detach())
    return torch.cat(out)

def test_encoder_reuse_keeps_the_samples(seed=1):
    model = load_embedded(precision='fp32')
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(2, 3, 12 + 2 * seed, 10, generator=g)
    calls = []
    hook = model.net.encoder.register_forward_hook(lambda *a: calls.append(1))
    try: got = torch.cat(list(model.iter_samples(lr, 10, torch.Generator().manual_seed(seed), 4)))
    finally: hook.remove()
    assert len(calls) == 1                         # one encoder pass for the three chunks (4 + 4 + 2 draws)
    ref = _reference(model, lr, 10, torch.Generator().manual_seed(seed), 4)
    assert got.shape == (10, 2, 3, lr.shape[-2] * 4, 40)
    assert torch.equal(got, ref)
    # images split across denoiser calls (max_batch below draws x images) give the same samples
    small = EmbeddedSR(model.net, steps=model.steps, precision='fp32', max_batch=4)
    assert torch.equal(torch.cat(list(small.iter_samples(lr, 10, torch.Generator().manual_seed(seed), 4))), ref)
    assert torch.equal(model.sample(lr, 4, torch.Generator().manual_seed(seed)), ref[:4])

def test_iter_samples_checks_its_arguments():
    model = EmbeddedSR(FlowSRNet(), precision='fp32')
    with pytest.raises(ValueError, match='chunk must be at least 1'): next(model.iter_samples(torch.rand(1, 3, 8, 8), 4, None, 0))
    with pytest.raises(ValueError, match='n_samples must be at least 1'): next(model.iter_samples(torch.rand(1, 3, 8, 8), 0, None, 2))

def test_training_forward_still_has_gradients():
    net = FlowSRNet()
    for p in net.parameters(): torch.nn.init.normal_(p, std=0.05)
    lr, rt = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 32, 32)
    out = net(rt, torch.rand(2), net.features(lr))
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad(): test = net(rt, torch.tensor([0.3, 0.6]), net.features(lr))
    ref = net(rt, torch.tensor([0.3, 0.6]), net.features(lr)).detach()
    assert torch.equal(test, ref)                  # the in-place (no-grad) path computes the same values

def test_png_files_decode_to_the_same_pixels():
    from conformal_superres.data.images import FAST_PNG_LEVEL, encode_pngs
    from conformal_superres.cli.main import prediction_files
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    sigma = rng.random((37, 53)) * 1e-3
    mask = sigma < 5e-4
    files = prediction_files(pred, sigma, mask, 0.1, 5e-4)
    slow = [io.BytesIO() for _ in range(2)]
    Image.fromarray(pred).save(slow[0], 'PNG'); Image.fromarray(mask * np.uint8(255)).save(slow[1], 'PNG')
    for got, want in zip(files[:2], slow):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(got))), np.asarray(Image.open(io.BytesIO(want.getvalue()))))
    assert np.array_equal(np.load(io.BytesIO(files[4])), sigma)
    arrays = [pred, mask * np.uint8(255), rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)]
    for level in (0, FAST_PNG_LEVEL, 9):
        for a, b in zip(arrays, encode_pngs(arrays, level=level)):
            im = Image.open(io.BytesIO(b)); assert im.format == 'PNG'
            assert np.array_equal(np.asarray(im), a)
    assert encode_pngs(arrays, workers=1) == encode_pngs(arrays)      # threads change nothing in the bytes
    with pytest.raises(ValueError, match='zlib level'): encode_pngs(arrays, level=-1)

def test_cli_import_defers_heavy_modules():
    "In a fresh process: the CLI imports none of scipy.stats, numba, scipy.ndimage; each comes when it is first needed."
    code = """import sys, json, torch
heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'numba' or m.startswith(('scipy.stats', 'scipy.ndimage')))
import conformal_superres.cli.main as cli
print(json.dumps(heavy()))
from conformal_superres.cli.commands import keep_freed_memory
kept = keep_freed_memory()
x = [torch.ones(3 << 20) for _ in range(3)]; del x
assert float(torch.ones(1 << 22).sum()) == 1 << 22
from conformal_superres.uncertainty import Uncertainty
from conformal_superres.high_probability import hb_pvalue
s = Uncertainty('box:5')(torch.rand(3, 1, 3, 16, 16))
assert s.shape == (1, 16, 16) and 'numba' in sys.modules and 'scipy.ndimage' in sys.modules
assert 0 <= hb_pvalue(0.05, 100, 0.1) <= 1 and 'scipy.stats' in sys.modules
import numba, os
assert 'NUMBA_THREADING_LAYER' in os.environ or numba.config.THREADING_LAYER == 'forksafe'
print(kept)"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.strip().splitlines()
    assert json.loads(out[0]) == [] and out[-1] in ('True', 'False')

def test_threads_option_and_policy():
    from conformal_superres.cli.main import UsageError, parser, thread_count
    p = parser()
    a = p.parse_args(['predict', '--calibration', 'c.json', 'x.png', '--threads', '3'])
    assert a.threads == 3 and thread_count(a) == 3
    a = p.parse_args(['predict', '--calibration', 'c.json', 'x.png'])
    assert a.threads == 0 and thread_count(a) == torch.get_num_threads()    # tiles of predict: all cores
    assert thread_count(p.parse_args(['calibrate', '--data', 'd'])) == 1     # 128 px crops: one thread
    assert thread_count(p.parse_args(['calibrate', '--data', 'd', '--crop', '512'])) == torch.get_num_threads()
    assert thread_count(p.parse_args(['calibrate', '--data', 'd', '--crop', '0'])) == torch.get_num_threads()
    assert thread_count(p.parse_args(['calibrate', '--data', 'd', '--threads', '2'])) == 2
    assert thread_count(p.parse_args(['demo'])) == 1
    with pytest.raises(UsageError, match='--threads must be >= 0'): thread_count(p.parse_args(['demo', '--threads', '-1']))
    with pytest.raises(UsageError): p.parse_args(['demo', '--threads', 'two'])

def test_colorizer_encoder_reuse_keeps_the_samples():
    from conformal_superres.models.colorizer import load_colorizer
    model = load_colorizer()
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    calls = []
    hook = model.net.encoder.register_forward_hook(lambda *a: calls.append(1))
    try: got = torch.cat(list(model.iter_samples(x, 5, torch.Generator().manual_seed(2), 2)))
    finally: hook.remove()
    assert len(calls) == 1
    g = torch.Generator().manual_seed(2)
    ref = torch.cat([model.sample(x, min(2, 5 - d), g) for d in range(0, 5, 2)])   # the encoder again for each chunk
    assert torch.equal(got, ref)
