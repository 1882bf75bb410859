"Tests of the embedded generative x4 model and its shipped weights (budget: well under 30 s on 2 cores)."
import pytest
import torch
from conformal_superres.models.embedded import (WEIGHTS_PATH, EmbeddedSR, FlowSRNet, evaluate_embedded,
                                         held_out_pairs, load_embedded, save_embedded)


@pytest.fixture(scope='module')
def model():
    return load_embedded(precision='fp32')


def test_shipped_weights_load_with_weights_only():
    assert WEIGHTS_PATH.exists(), f"missing {WEIGHTS_PATH}"
    assert WEIGHTS_PATH.stat().st_size < 20e6
    ck = torch.load(WEIGHTS_PATH, map_location='cpu', weights_only=True)
    assert ck['format'] == 'conformal-superres/embedded' and ck['version'] == 1
    net = FlowSRNet(**ck['config'])
    net.load_state_dict({k: v.float() for k, v in ck['state_dict'].items()})  # every key present, shapes match
    m = EmbeddedSR.pretrained()
    assert m.scale == 4


def test_sample_shape_range_dtype(model):
    lr = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    s = model.sample(lr, 3, torch.Generator().manual_seed(1))
    assert s.shape == (3, 2, 3, 48, 80) and s.dtype == torch.float32
    assert s.min() >= 0 and s.max() <= 1
    one = model(lr[0], torch.Generator().manual_seed(1))  # a single (3,h,w) image is accepted too
    assert one.shape == (1, 3, 48, 80)


def test_reproducible_and_seeds_differ(model):
    lr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    a = model.sample(lr, 4, torch.Generator().manual_seed(5))
    b = model.sample(lr, 4, torch.Generator().manual_seed(5))
    c = model.sample(lr, 4, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-4
    assert (a[0] - a[1]).abs().mean() > 1e-4  # the draws of one call differ from each other


def test_batched_draws_equal_successive_calls(model):
    # noise convention: draw m uses the m-th (B,3,H,W) block of normals from the generator
    lr = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    batched = model.sample(lr, 5, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    calls = torch.stack([model(lr, g) for _ in range(5)])
    torch.testing.assert_close(batched, calls, atol=1e-5, rtol=0)
    chunked = load_embedded(precision='fp32', max_batch=4).sample(lr, 5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(batched, chunked, atol=1e-5, rtol=0)


def test_bf16_path_runs_and_is_close(model):
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    m16 = load_embedded(precision='bf16')
    assert m16.autocast_dtype == torch.bfloat16
    s16 = m16.sample(lr, 2, torch.Generator().manual_seed(0))
    s32 = model.sample(lr, 2, torch.Generator().manual_seed(0))
    assert s16.dtype == torch.float32 and s16.shape == s32.shape
    assert (s16 - s32).abs().mean() < 0.01
    sa = load_embedded(precision='auto').sample(lr, 2, torch.Generator().manual_seed(0))
    assert torch.equal(sa, s16) or torch.equal(sa, s32)   # 'auto' runs one of the two paths, unchanged


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        load_embedded(tmp_path / 'nope.pt')
    torch.save({'a': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not an embedded-model weights file'):
        load_embedded(tmp_path / 'other.pt')
    p = save_embedded(FlowSRNet(), tmp_path / 'w.pt', {'k': 1})
    assert load_embedded(p).info == {'k': 1}


def test_real_generative_model_on_held_out_crops(model):
    # a small version of the card's measurement: the sample mean beats bicubic, sigma tracks the error
    pairs = held_out_pairs(1, 96, seed=11, family=('skimage', 'sklearn', 'matplotlib'))
    r = evaluate_embedded(model, pairs, n_samples=8, seed=1)
    assert r['psnr_gain_mean_vs_bicubic'] > 0.2, r
    assert r['spearman_pooled'] > 0.3, r
