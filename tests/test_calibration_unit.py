"""The calibration unit: the guarantee bounds the largest error inside the mask of a unit of the calibration's size.

A limit calibrated on small crops and applied to whole images of several times their area is exceeded (the
failure the unit fixes); calibrated with a tile unit, the per-tile risk on the same whole images stays at or
below alpha. A calibration of one unit refuses to be used for another.
"""
import json, warnings
import numpy as np
import pytest
import torch
from conformal_superres.mask import ConformalMask, CalibrationFileError, UnitWarning, summarise
from conformal_superres.models.adapters import PerturbedModel, bicubic_model
from conformal_superres.data.photos import bundled_photos
from conformal_superres.data.pairs import make_pairs
from conformal_superres.uncertainty import Uncertainty
from conformal_superres.fidelity import RGBPointwise
from conformal_superres.tiling import calibration_tile, image_tiles
from conformal_superres.at_scale import calibrator_at_scale

UNIT, BIG, ALPHA = 16, 64, 0.05   # whole images of 16 times the unit's area; B = 1 (RGB pointwise), so n = 200 leaves little slack

@pytest.fixture(scope='module')
def model():
    m = PerturbedModel(bicubic_model(4), 4)   # a cheap generative model: bicubic x4 under random sub-pixel shifts, flips, noise
    m.halo = 2                                # bicubic reaches 2 low-res pixels
    return m

@pytest.fixture(scope='module')
def data():
    photos = bundled_photos(split='held_out')
    return make_pairs(photos, BIG, 12, seed=1), make_pairs(photos, UNIT, 12, seed=2)

def _mask(model, tile=None, seed=0):
    return ConformalMask(model, Uncertainty(kernel='box:3'), RGBPointwise(), n_samples=3, seed=seed, tile=tile)

def _split(big, crops, split):
    rng = np.random.default_rng(split)
    idx = rng.permutation(len(big))
    return [big[i] for i in idx[:200]], [big[i] for i in idx[200:220]], [crops[i] for i in rng.permutation(len(crops))[:200]]

@pytest.mark.parametrize('split', [0, 1])
def test_crop_calibration_fails_on_whole_images_and_tiles_hold(model, data, split):
    big, crops = data
    cal, test, cal_crops = _split(big, crops, split)
    cm = _mask(model)
    cm.calibrate(cal_crops, (ALPHA,), progress=False)
    assert cm.unit == {'kind': 'whole'} and cm.unit_seen['sizes'] == [[UNIT, UNIT]]
    with pytest.warns(UnitWarning, match='NOT GUARANTEED'):
        s = summarise(cm.evaluate(test, (ALPHA,), progress=False))[0]
    assert s['outside_unit'] == len(test)
    assert s['fidelity_error'] - s['fidelity_error_se'] > ALPHA, s         # the failure: whole images exceed alpha

    cm = _mask(model, tile=UNIT)
    cm.calibrate(cal, (ALPHA,), progress=False)                             # one tile of each whole image
    s = summarise(cm.evaluate(test, (ALPHA,), progress=False))[0]
    assert s['unit'] == 'tile' and s['n_images'] == len(test)
    assert s['n_tiles'] == sum(len(image_tiles(cm.seed, lr, UNIT // 4)) for lr, _ in test)   # every tile of every layout
    assert s['fidelity_error'] <= ALPHA + s['fidelity_error_se'], s       # the guarantee, per tile
    assert s['whole_image_error'] > ALPHA, s                                # and the whole image is not what it bounds

def test_predicted_tiles_are_calibration_tiles(model, data):
    "Each cell of a prediction comes from its tile's context crop, computed exactly as calibration computes that tile."
    big, _ = data
    cm = _mask(model, tile=UNIT)
    cm.calibrate(big[:20], (0.2,), progress=False)
    lr, hr = big[30]
    p = cm.predict(lr, 0.2)
    t = calibration_tile(cm.seed, lr, UNIT // 4)
    assert t in image_tiles(cm.seed, lr, UNIT // 4)
    _, pred_t, sigma_t, _ = cm.tile_maps(lr[None], hr[None], None, t)
    y0, y1, x0, x1 = (4 * v for v in t.cell)
    inner = (slice(y0 - 4 * t.y, y1 - 4 * t.y), slice(x0 - 4 * t.x, x1 - 4 * t.x))
    assert torch.equal(p.sigma[y0:y1, x0:x1], sigma_t[0][inner])
    assert torch.equal(p.prediction[:, y0:y1, x0:x1], pred_t[0][(slice(None), *inner)])
    assert torch.equal(p.mask, p.sigma < p.limit)
    cells = sorted(p.tiles)
    covered = torch.zeros(p.mask.shape, dtype=torch.int)
    for a, b, c, d in cells: covered[a:b, c:d] += 1
    assert torch.equal(covered, torch.ones_like(covered))                  # the cells partition the image
    assert p.guarantee.startswith(f'in each {UNIT}x{UNIT} tile')
    assert torch.equal(cm.predict(lr, 0.2).mask, p.mask)                   # the grid offset is drawn from the seed: reproducible

def test_at_scale_tiles_equal_in_process(model, data, tmp_path):
    big, _ = data
    a, b = _mask(model, tile=UNIT), _mask(model, tile=UNIT)
    la = a.calibrate(big[:12], (0.1, 0.3), progress=False)
    lb = b.calibrate(big[:12], (0.1, 0.3), progress=False, engine='local', store=tmp_path / 'store')
    assert la == lb

def test_unit_is_recorded_and_checked(model, data, tmp_path):
    big, crops = data
    cm = _mask(model, tile=UNIT)
    cm.calibrate(big[:10], (0.3,), progress=False)
    f = cm.save(tmp_path / 'tile.json')
    doc = json.loads(f.read_text())
    assert doc['config']['unit'] == {'kind': 'tile', 'size': UNIT}
    assert ConformalMask.from_file(f, model).unit == {'kind': 'tile', 'size': UNIT}
    for other in (None, 32):   # a calibration of one unit refuses another
        with pytest.raises(CalibrationFileError, match='unit'):
            _mask(model, tile=other).load(f)
    with pytest.raises(ValueError, match='smaller than the calibration unit'):
        cm.predict(torch.rand(3, 3, 8), 0.3)
    with pytest.raises(ValueError, match='multiple of the scale'):
        _mask(model, tile=18)
    bad = dict(doc, config=dict(doc['config'], unit={'kind': 'tile', 'size': 18}))
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(CalibrationFileError, match='config.unit.size'):
        ConformalMask.from_file(tmp_path / 'bad.json', model)

    whole = _mask(model)
    whole.calibrate(crops[:10], (0.3,), progress=False)
    f = whole.save(tmp_path / 'whole.json')
    assert json.loads(f.read_text())['unit_seen'] == {'sizes': [[UNIT, UNIT]], 'pixels': [UNIT * UNIT, UNIT * UNIT]}
    back = ConformalMask.from_file(f, model)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert back.predict(crops[20][0], 0.3).guarantee.startswith('for whole images of the sizes calibrated on (16x16)')
    with pytest.warns(UnitWarning, match='tile unit'):
        p = back.predict(big[0][0], 0.3)                                    # another size: said, not silent
    assert p.guarantee.startswith('NOT GUARANTEED')
