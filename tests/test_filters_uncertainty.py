"""Randomised checks of the filters and of the patch variance against scipy / float64 references
(a wider sweep than the notebooks'; a few seconds)."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.color import rgb2lab

from conformal_superres.filters import box_filter, gaussian_filter, lowpass
from conformal_superres.fidelity import Neighbourhood, SmoothedError
from conformal_superres.uncertainty import Uncertainty, patch_variance

rng = np.random.default_rng()


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


def test_box_float32_precision_on_large_image():
    "Cumulative sums in float64: a float32 box filter of a 1500-wide image is as good as float32 rounding."
    a = np.random.default_rng().random((1500, 1500)).astype(np.float32) + 1000
    out = box_filter(torch.from_numpy(a), 31).numpy().astype(np.float64)
    ref = ndi.uniform_filter(a.astype(np.float64), 31, mode='mirror')
    assert np.abs(out - ref).max() < 1e-4  # float32 spacing at 1000 is 6e-5


def test_smoothed_error_dominates_neighbourhood():
    for kern in ['box:3', 'box:9', 'gaussian:0.7', 'gaussian:4.0']:
        y, yhat = torch.rand(2, 3, 3, 30, 31, dtype=torch.float64)
        assert (SmoothedError(kern)(y, yhat) >= Neighbourhood(kern)(y, yhat) - 1e-12).all()


def _nlab(s):
    lab = rgb2lab(np.moveaxis(s, 2, -1))
    return np.moveaxis(lab / [100, 254, 254] + [0, 0.5, 0.5], -1, 2)


@pytest.mark.parametrize('kernel', ['box:7', 'gaussian:2.5', None])
def test_patch_variance_random_batching(kernel):
    M, B, H, W = 7, 2, 23, 18
    base = rng.random((1, B, 3, H, W))
    s = np.clip(base + rng.uniform(0.001, 0.1, (1, B, 1, H, W)) * rng.standard_normal((M, B, 3, H, W)), 0, 1)
    S = _nlab(s)
    if kernel is None: f = lambda z: z
    elif kernel.startswith('box'): f = lambda z: ndi.uniform_filter(z, (1, 1, 1, 7, 7), mode='mirror')
    else: f = lambda z: ndi.gaussian_filter(z, (0, 0, 0, 2.5, 2.5), mode='mirror')
    ref = (f(S ** 2).mean(0) - f(S).mean(0) ** 2).mean(1)
    t = torch.from_numpy(s)
    out = patch_variance(t, kernel)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-12 * ref.max())
    cuts = np.sort(rng.choice(np.arange(1, M), 3, replace=False))
    parts = np.split(np.arange(M), cuts)
    assert torch.equal(patch_variance((t[p] for p in parts), kernel), out)


def test_uncertainty_pipeline_float64_reference():
    s = torch.rand(5, 1, 3, 40, 36, dtype=torch.float64)
    S = _nlab(s.numpy())
    pv = (ndi.uniform_filter(S ** 2, (1, 1, 1, 5, 5), mode='mirror').mean(0)
          - ndi.uniform_filter(S, (1, 1, 1, 5, 5), mode='mirror').mean(0) ** 2).mean(1)
    lv = np.quantile(pv.reshape(1, -1), 0.95, axis=1)[:, None, None]
    ref = ndi.gaussian_filter(np.minimum(pv, lv), (0, 9, 9), mode='mirror')
    out = Uncertainty('box:5', smoothing=9, clip_quantile=0.95)(s)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-12 * ref.max())
