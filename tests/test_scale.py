"""The scale engines on a local Ray cluster that the tests start (2 CPUs): Ray gives the records and limits of
the plain `ConformalMask.calibrate` loop exactly (each image seeded by the mask's seed and its content, wherever
it is drawn), also when a worker dies mid-run, and a stopped driver resumes without redoing or double counting
an image. Tiny images and a bicubic+noise model keep it to seconds of work."""
import os, sys
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conformal_superres.calibration import Records
from conformal_superres.mask import ConformalMask
from conformal_superres.uncertainty import Uncertainty
from conformal_superres.fidelity import Neighbourhood
from conformal_superres.at_scale import RecordStore, calibrator_at_scale, run_config

ray = pytest.importorskip('ray', reason='the Ray engine needs the ray extra: pip install "conformal-superres[ray]"')
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this test file
ALPHAS = [0.3, 0.4, 0.6, 1.0, 1.5, 2.5]   # above B/(n+1) = 3/11: every level can give a mask


class NoisyBicubic:
    "x4 bicubic with Gaussian noise on the output: a generative model in the package's sense."
    scale, name = 4, 'noisy-bicubic'
    def __call__(self, lr, generator=None):
        up = F.interpolate(lr, scale_factor=4, mode='bicubic', align_corners=False)
        return (up + 0.05 * torch.randn(up.shape, generator=generator, dtype=up.dtype)).clamp(0, 1)


class CrashOnce(NoisyBicubic):
    "The same samples, but the process exits at its `k`-th call, the first time only (a marker file remembers)."
    def __init__(self, marker, k): self.marker, self.k, self.calls = str(marker), k, 0
    def __call__(self, lr, generator=None):
        self.calls += 1
        if self.calls == self.k and not os.path.exists(self.marker):
            open(self.marker, 'w').close()
            os._exit(1)
        return super().__call__(lr, generator)


def tiny_pairs(n, h=10, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(n):
        hr = (F.interpolate(torch.rand(1, 3, h, w, generator=g), scale_factor=4, mode='bilinear')[0]
              + 0.1 * torch.rand(3, 4 * h, 4 * w, generator=g)).clamp(0, 1)
        out[f'img{i:02d}'] = (F.avg_pool2d(hr[None], 4)[0], hr)
    return out


def mask_of(model): return ConformalMask(model, Uncertainty(kernel='box:3'), Neighbourhood('box:3'), n_samples=3, seed=5)


def same_records(a, b):
    assert a.n == b.n
    for ra, rb in zip(a.records, b.records):
        for f in ('sigma', 'loss', 'n_pixels'): np.testing.assert_array_equal(getattr(ra, f), getattr(rb, f))


@pytest.fixture(scope='module')
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=150 << 20)
    yield
    ray.shutdown()


@pytest.fixture(scope='module')
def reference():
    "The single process: `ConformalMask.calibrate`'s own loop over the pairs, no engine."
    pairs = tiny_pairs(10)
    cm = mask_of(NoisyBicubic())
    cm.calibrate(list(pairs.values()), ALPHAS, progress=False)   # in id order, as the engines return their records
    return pairs, cm.calibrator


def test_local_engine_equals_plain_loop(reference):
    pairs, ref = reference
    cm = mask_of(NoisyBicubic())
    limits = cm.calibrate(pairs, ALPHAS, engine='local', progress=False)
    same_records(cm.calibrator, ref)
    assert [limits[a] for a in ALPHAS] == list(ref.limits(ALPHAS))


def test_ray_equals_single_process(cluster, reference, tmp_path):
    pairs, ref = reference
    cal = calibrator_at_scale(mask_of(NoisyBicubic()), pairs, store=tmp_path / 'store', engine='ray', workers=2, progress=False)
    same_records(cal, ref)
    np.testing.assert_array_equal(cal.limits(ALPHAS), ref.limits(ALPHAS))
    assert np.isfinite(ref.limits(ALPHAS)).any()        # some levels give a non-trivial mask: the check means something
    assert len(RecordStore(tmp_path / 'store', run_config(mask_of(NoisyBicubic())))) == len(pairs)


def test_dead_worker_is_replaced(cluster, reference, tmp_path):
    pairs, ref = reference
    marker = tmp_path / 'crashed'
    cm = mask_of(CrashOnce(marker, k=3 * 2 + 2))        # dies while drawing its third image (M = 3 calls per image)
    stored = []
    cal = calibrator_at_scale(cm, pairs, store=tmp_path / 'store', engine='ray', workers=2, progress=False,
                              on_record=lambda k, r: stored.append(k))
    assert marker.exists()                               # a worker did die
    assert sorted(stored) == sorted(pairs)               # every image stored once, the lost one redone
    same_records(cal, ref)
    np.testing.assert_array_equal(cal.limits(ALPHAS), ref.limits(ALPHAS))


def test_stopped_driver_resumes(cluster, reference, tmp_path):
    pairs, ref = reference
    first = []
    def stop_at_three(k, r):
        first.append(k)
        if len(first) == 3: raise KeyboardInterrupt   # as a Ctrl-C in the driver
    with pytest.raises(KeyboardInterrupt):
        calibrator_at_scale(mask_of(NoisyBicubic()), pairs, store=tmp_path / 'store', engine='ray', workers=2,
                            progress=False, on_record=stop_at_three)
    store = RecordStore(tmp_path / 'store', run_config(mask_of(NoisyBicubic())))
    assert len(first) == 3 and 3 <= len(store) < len(pairs)   # at most the images in flight landed after the stop
    on_disk = {k for k in pairs if k in store}
    second = []
    cal = calibrator_at_scale(mask_of(NoisyBicubic()), pairs, store=tmp_path / 'store', engine='ray', workers=2,
                              progress=False, on_record=lambda k, r: second.append(k))
    assert not on_disk & set(second)                     # nothing stored was redone
    assert sorted(on_disk | set(second)) == sorted(pairs) and len(second) == len(pairs) - len(on_disk)
    assert cal.n == len(pairs)                           # each image counted once
    same_records(cal, ref)
    np.testing.assert_array_equal(cal.limits(ALPHAS), ref.limits(ALPHAS))


def test_other_configuration_refused(cluster, reference, tmp_path):
    pairs, _ = reference
    calibrator_at_scale(mask_of(NoisyBicubic()), dict(list(pairs.items())[:2]), store=tmp_path / 'store', progress=False)
    other = ConformalMask(NoisyBicubic(), Uncertainty(kernel='box:3'), Neighbourhood('box:3'), n_samples=4, seed=5)
    with pytest.raises(ValueError, match='another configuration.*n_samples'):
        calibrator_at_scale(other, pairs, store=tmp_path / 'store', engine='ray', workers=2, progress=False)


def test_mask_and_command_line(cluster, reference, tmp_path):
    "ConformalMask.calibrate(engine='ray') and `conformal-superres calibrate --engine ray` on image files."
    from conformal_superres.cli.main import main
    from conformal_superres.data.images import encode_image
    pairs, ref = reference
    cm = mask_of(NoisyBicubic())
    lim = cm.calibrate(pairs, ALPHAS, engine='ray', workers=2, store=tmp_path / 'm', progress=False)
    assert [lim[a] for a in ALPHAS] == list(ref.limits(ALPHAS))   # identical to the plain loop's
    assert cm.n == len(pairs)
    data = tmp_path / 'photos'; data.mkdir()
    for k, (lr, hr) in list(pairs.items())[:4]: (data / f'{k}.png').write_bytes(encode_image(hr))
    common = ['calibrate', '--model', 'bicubic-perturbed', '--data', str(data), '--crop', '0', '-M', '3', '--alphas', '0.8,1.5', '--quiet']
    main(common + ['--out', str(tmp_path / 'plain.json')])
    for engine in ('local', 'ray'):
        main(common + ['--engine', engine, '--workers', '2', '--store', str(tmp_path / f'cli-{engine}'), '--out', str(tmp_path / f'{engine}.json')])
    import json
    a, b, c = (json.loads((tmp_path / f'{e}.json').read_text()) for e in ('plain', 'local', 'ray'))
    assert a['limits'] == b['limits'] == c['limits'] and a['n'] == b['n'] == c['n'] == 4
