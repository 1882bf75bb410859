"""Randomised checks of the filters and of the patch variance against scipy / float64 references
(a wider sweep than the notebooks'; about 20 s).

The accuracy claim of the uncertainty map (nbs/04_uncertainty.ipynb, "Checks"): with sigma_64 the same
formula in float64 from the float64 normalised Lab of the same sample values, per pixel
|sigma - sigma_64| <= 2 delta sqrt(sigma_64) + delta^2 + 1e-12 max(sigma_64), with delta = 1e-6 for
float32 and half samples (their Lab values are computed in float32) and 1e-12 for float64 samples."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.color import rgb2lab

from conformal_superres.filters import box_filter, gaussian_filter, lowpass
from conformal_superres.fidelity import Neighbourhood, SmoothedError
from conformal_superres.uncertainty import LabMoments, Uncertainty, patch_variance

from conftest import SEED   # CONFORMAL_SUPERRES_SEED, or fresh: printed with every test
rng = np.random.default_rng(SEED)
DELTA = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-6, torch.bfloat16: 1e-6}


def within_claim(ours, ref, dtype):
    "The accuracy claim, per pixel; returns the largest error as a fraction of its bound."
    ours = ours.numpy() if isinstance(ours, torch.Tensor) else ours
    d = DELTA[dtype]
    bound = 2 * d * np.sqrt(np.maximum(ref, 0)) + d * d + 1e-12 * np.abs(ref).max()
    worst = (np.abs(ours - ref) / bound).max()
    assert worst <= 1, f"sigma is off by {worst:.2f} times the claimed bound ({dtype})"
    return worst


@pytest.mark.parametrize('trial', range(6))
def test_filters_match_scipy_mirror(trial):
    H, W = rng.integers(1, 40, 2)
    a = rng.standard_normal((2, H, W))
    k = int(rng.integers(0, 30)) * 2 + 1
    s = float(rng.uniform(0.2, 30))
    np.testing.assert_allclose(box_filter(torch.from_numpy(a), k).numpy(),
                               ndi.uniform_filter(a, (1, k, k), mode='mirror'), rtol=0, atol=1e-11)
    np.testing.assert_allclose(gaussian_filter(torch.from_numpy(a), s).numpy(),
                               ndi.gaussian_filter(a, (0, s, s), mode='mirror'), rtol=0, atol=1e-11)


@pytest.mark.parametrize('threads', [1, 2])
def test_filters_banded_tall_and_wide(threads):
    "Maps of many bands with a partial last band, on one and two threads."
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for H, W in [(700, 45), (37, 900)]:
            a = rng.random((H, W))
            k, s = int(rng.integers(1, 40)) * 2 + 1, float(rng.uniform(5, 40))
            np.testing.assert_allclose(box_filter(torch.from_numpy(a), k).numpy(),
                                       ndi.uniform_filter(a, k, mode='mirror'), rtol=0, atol=1e-12)
            np.testing.assert_allclose(gaussian_filter(torch.from_numpy(a), s).numpy(),
                                       ndi.gaussian_filter(a, s, mode='mirror'), rtol=0, atol=1e-12)
    finally: torch.set_num_threads(saved)


def test_box_float32_precision_on_large_image():
    "Sums in float64: a float32 box filter of a 1500-wide image is as good as float32 rounding."
    a = np.random.default_rng(SEED + 1).random((1500, 1500)).astype(np.float32) + 1000
    out = box_filter(torch.from_numpy(a), 31).numpy().astype(np.float64)
    ref = ndi.uniform_filter(a.astype(np.float64), 31, mode='mirror')
    assert np.abs(out - ref).max() < 1e-4  # float32 spacing at 1000 is 6e-5


def test_smoothed_error_dominates_neighbourhood():
    for kern in ['box:3', 'box:9', 'gaussian:0.7', 'gaussian:4.0']:
        y, yhat = torch.rand(2, 3, 3, 30, 31, dtype=torch.float64)
        assert (SmoothedError(kern)(y, yhat) >= Neighbourhood(kern)(y, yhat) - 1e-12).all()


def _nlab(s):
    lab = rgb2lab(np.moveaxis(np.asarray(s, dtype=np.float64), 2, -1))
    return np.moveaxis(lab / [100, 254, 254] + [0, 0.5, 0.5], -1, 2)


def _reference(s, kernel, smoothing=None):
    "sigma_64: the formula in float64 from the float64 Lab of the samples' values (M,B,3,H,W)."
    S = _nlab(s)
    if kernel is None: f = lambda z: z
    elif kernel.startswith('box'):
        k = int(kernel.split(':')[1]); f = lambda z: ndi.uniform_filter(z, (1, 1, 1, k, k), mode='mirror')
    else:
        g = float(kernel.split(':')[1]); f = lambda z: ndi.gaussian_filter(z, (0, 0, 0, g, g), mode='mirror')
    sigma = (f(S ** 2).mean(0) - f(S).mean(0) ** 2).mean(1)
    return ndi.gaussian_filter(sigma, (0, smoothing, smoothing), mode='mirror') if smoothing else sigma


@pytest.mark.parametrize('kernel', ['box:7', 'gaussian:2.5', None])
def test_patch_variance_random_batching(kernel):
    M, B, H, W = 7, 2, 23, 18
    base = rng.random((1, B, 3, H, W))
    s = np.clip(base + rng.uniform(0.001, 0.1, (1, B, 1, H, W)) * rng.standard_normal((M, B, 3, H, W)), 0, 1)
    t = torch.from_numpy(s)
    out = patch_variance(t, kernel)
    within_claim(out, _reference(s, kernel), torch.float64)
    cuts = np.sort(rng.choice(np.arange(1, M), 3, replace=False))
    parts = np.split(np.arange(M), cuts)
    assert torch.equal(patch_variance((t[p] for p in parts), kernel), out)
    t32 = t.float()   # float32: the claim, and batching still changes nothing
    within_claim(patch_variance(t32, kernel), _reference(t32.numpy(), kernel), torch.float32)
    assert torch.equal(patch_variance((t32[p] for p in parts), kernel), patch_variance(t32, kernel))


@pytest.mark.parametrize('case', ['realistic', 'within 1e-3 bright', 'within 1e-3 dark'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.float64])
def test_claim_realistic_and_adversarial(case, dtype):
    "Samples that differ by model-like amounts, or all within 1e-3; per-pixel variance and box:31 + Gaussian 12."
    M, H, W = 6, 96, 80
    base = torch.rand(1, 1, 3, H, W, dtype=torch.float64)
    base = ndi.uniform_filter(base.numpy(), (1, 1, 1, 5, 5))  # smooth image content
    base = torch.from_numpy(base)
    if case == 'realistic':
        amp = 0.005 + 0.045 * torch.rand(1, 1, 1, H, W, dtype=torch.float64)
        s = base + amp * torch.randn(M, 1, 3, H, W, dtype=torch.float64)
    else:
        s = (0.1 + 0.8 * base if 'bright' in case else 0.1 * base) + 1e-3 * torch.randn(M, 1, 3, H, W, dtype=torch.float64)
    s = s.clamp(0, 1).to(dtype)
    values = s.double().numpy()
    within_claim(patch_variance(s), _reference(values, None), dtype)
    within_claim(Uncertainty('box:31', smoothing=12)(s), _reference(values, 'box:31', 12.0), dtype)


def test_lab_values_within_delta():
    "The Lab values behind the moments (one sample's mean is its Lab) are within delta of float64."
    x = torch.rand(1, 3, 300, 200, dtype=torch.float64)
    x[:, :, :100] *= 0.12  # many values near and below both breakpoints
    for dt in [torch.float32, torch.float16, torch.float64]:
        xd = x.to(dt)
        err = np.abs(LabMoments().add(xd).mean.numpy() - _nlab(xd.double().numpy()[None])[0]).max()
        assert err <= DELTA[dt], (dt, err)


def test_uncertainty_pipeline_float64_reference():
    s = torch.rand(5, 1, 3, 40, 36, dtype=torch.float64)
    S = _nlab(s.numpy())
    pv = (ndi.uniform_filter(S ** 2, (1, 1, 1, 5, 5), mode='mirror').mean(0)
          - ndi.uniform_filter(S, (1, 1, 1, 5, 5), mode='mirror').mean(0) ** 2).mean(1)
    lv = np.quantile(pv.reshape(1, -1), 0.95, axis=1)[:, None, None]
    ref = ndi.gaussian_filter(np.minimum(pv, lv), (0, 9, 9), mode='mirror')
    out = Uncertainty('box:5', smoothing=9, clip_quantile=0.95)(s)
    within_claim(out, ref, torch.float64)
