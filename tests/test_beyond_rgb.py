"""Beyond 8-bit sRGB photos: grey, 16-bit, medical (DICOM) and multi-band data as normalised intensities in a declared
range, compared in the 'linear' space with errors in the data's units.

The guarantee is checked on images that ship with installed packages (a CT slice of pydicom's test files, in HU; an
MR slice stored in 16 bits; scikit-image's grey photos; a 4-band 16-bit raster made of them): over random
calibration/test splits of each pool the mean largest error inside the mask stays at or below alpha (Z = 4.5
standard errors, fresh seed each run), while the mask keeps a real part of the image and the risk is not far below
alpha, so a wrong bound, wrong units or a wrong space would show. Readers are checked on files the tests write,
and every mismatch of channels, range or space between a calibration and its data is refused with the file named."""
import json
import warnings

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from conformal_superres.colour import ValueRange
from conformal_superres.data.datasets import intensity_pairs
from conformal_superres.data.images import load_intensity, read_dicom
from conformal_superres.data.pairs import batched, split_pairs
from conformal_superres.experiments.risk_check import check_risk
from conformal_superres.fidelity import Intensity, Neighbourhood, psnr_bound
from conformal_superres.mask import CalibrationFileError, ConformalMask
from conformal_superres.models.adapters import PerturbedModel, bicubic_model
from conformal_superres.uncertainty import Uncertainty

Z = 4.5
pydicom = pytest.importorskip('pydicom')   # the 'medical' extra
from pydicom.data import get_testdata_file  # noqa: E402


@pytest.fixture
def seed():
    from conftest import SEED as s
    print(f"seed {s} (replay with CONFORMAL_SUPERRES_SEED={s})")
    return s


def model(scale=2):
    "The package's perturbed bicubic: a cheap stochastic upscaler that works on any channel count."
    return PerturbedModel(bicubic_model(scale), noise=0.004, shift=0.5)


def linear_mask(metric, n_samples=4, **kw):
    return ConformalMask(model(), Uncertainty('box:3', space='linear'), metric, n_samples=n_samples, **kw)


def maps(cm, pairs):
    "sigma and D maps of each pair through the mask's own sampling (public API only)."
    sig, fid = [], []
    for lr, hr in pairs:
        pred, s = cm.sample_sigma(lr)
        sig.append(s[0].numpy()); fid.append(cm.fidelity(hr, pred)[0].numpy())
    return sig, fid


def crops_of(tmp_path, name, arrays, seed, n=24, crop=32, **read):
    "Random 32 px crops (x2 pairs) of the given (H,W) or (C,H,W) uint16 arrays, written as TIFF files and read back."
    files = []
    for k, a in enumerate(arrays):
        f = tmp_path / f'{name}{k}.tif'
        tifffile.imwrite(f, a, photometric='minisblack', planarconfig='separate' if a.ndim == 3 else None)
        files.append(f)
    return intensity_pairs(files, crop, n, scale=2, seed=seed, **read)


def check_pool(cm, pairs, alphas, n_calib, seed):
    sig, fid = maps(cm, pairs)
    rc = check_risk(sig, fid, alphas, n_calib, n_splits=400, bound=cm.bound, seed=seed)
    for k, (a, m, se, row) in enumerate(zip(alphas, rc.mean, rc.se, rc.rows())):
        print(f"alpha {a:g} {cm.fidelity.units}: risk {m:.4g} +- {se:.2g}, mask {row['mask']:.2f}")
        assert m <= a + Z * se, (a, m, se, seed)             # Theorem 2.1 in the data's units
        assert m >= a / 8, (a, m, seed)                       # and not trivially: the calibration uses its budget
        assert row['mask'] > 0.05, row                        # the mask is not empty ...
        if k == 0: assert row['mask'] < 0.95, row             # ... nor everything at the first level
    return sig, fid


# ---------------------------------------------------------------- the guarantee on grey and 16-bit data
def test_guarantee_on_a_ct_slice_in_hounsfield_units(seed, tmp_path):
    f = get_testdata_file('CT_small.dcm')
    hu, info = read_dicom(f)
    assert info['units'] == 'HU'
    win = ValueRange.window(300, 1600, 'HU')
    # the slice's random crops: a 16-bit DICOM read in HU through a window
    x, rng = load_intensity(f, window=(300, 1600))
    assert rng == win and x.shape == (1, 128, 128)
    g = torch.Generator().manual_seed(seed)
    tops = torch.randint(0, 128 - 32 + 1, (2, 80), generator=g)
    from conformal_superres.data.pairs import Pair, degrade
    pairs = [Pair(degrade(x[:, t:t + 32, l:l + 32], 2), x[:, t:t + 32, l:l + 32].clone(), 'ct') for t, l in tops.T.tolist()]
    cm = linear_mask(Intensity(value_range=win))
    assert cm.bound == 1600
    check_pool(cm, pairs, [100.0, 140.0], n_calib=40, seed=seed)


def test_guarantee_on_a_16_bit_mr_slice_and_grey_photos(seed, tmp_path):
    from skimage import data
    mr = get_testdata_file('examples_overlay.dcm')            # a 16-bit MR slice, 300 x 484, with its own window
    pairs = intensity_pairs([mr], 32, 100, scale=2, seed=seed)  # read through the file's window
    window = load_intensity(mr)[1]
    assert window == ValueRange.window(450, 790, '')
    cm = linear_mask(Intensity('box:3', window))
    check_pool(cm, pairs, [18.0, 22.0], n_calib=60, seed=seed)
    grey = [getattr(data, n)().astype(np.uint16) * 257 for n in ('camera', 'moon', 'coins', 'page')]
    pairs = crops_of(tmp_path, 'grey', grey, seed, n=20, value_range=(0, 65535))
    cm = linear_mask(Intensity(value_range=ValueRange(0, 65535)))
    check_pool(cm, pairs, [6000.0, 12000.0], n_calib=40, seed=seed)


def test_guarantee_on_a_four_band_raster(seed, tmp_path):
    from skimage import data
    bands = np.stack([getattr(data, n)()[:256, :256] for n in ('camera', 'moon', 'grass', 'brick')]).astype(np.uint16) * 257
    pairs = crops_of(tmp_path, 'raster', [bands], seed, n=80, value_range=(0, 65535), channels=4)
    assert pairs[0].hr.shape == (4, 32, 32)
    cm = linear_mask(Intensity(value_range=(0, 65535), bands='max'))
    check_pool(cm, pairs, [12000.0, 20000.0], n_calib=40, seed=seed)


def test_mask_object_agrees_with_the_pool(seed, tmp_path):
    "calibrate + evaluate of ConformalMask on one split give the pool's limit and risk on that split."
    from skimage import data
    pairs = crops_of(tmp_path, 'cam', [data.camera().astype(np.uint16) * 257], seed, n=30, value_range=(0, 65535))
    cal, test = split_pairs(pairs, 20, seed=seed, by_source=False)
    cm = linear_mask(Intensity(value_range=(0, 65535)))
    r = cm.calibrate(batched(cal, 4), alphas=[8000.0], progress=False)[8000.0]
    rows = cm.evaluate(test, [8000.0], progress=False)
    sig, fid = maps(cm, cal)
    from conformal_superres.calibration import Calibrator
    c = Calibrator(bound=cm.bound)
    for s, d in zip(sig, fid): c.add(torch.from_numpy(s), torch.from_numpy(d))
    assert c.limits(8000.0) == r
    tsig, tfid = maps(cm, test)
    want = [float(d[s < r].max()) if (s < r).any() else 0.0 for s, d in zip(tsig, tfid)]
    assert np.allclose([row['fidelity_error'] for row in rows], want)


# ---------------------------------------------------------------- calibration files: channels, range, space, B
def test_calibration_file_records_the_data_and_refuses_a_mismatch(tmp_path):
    g16 = (np.random.default_rng(0).random((3, 64, 64)) * 65535).astype(np.uint16)
    pairs = crops_of(tmp_path, 'g', list(g16), 0, n=6, value_range=(0, 65535))
    cm = linear_mask(Intensity(value_range=ValueRange(0, 65535, 'counts')))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # alpha below B/(n+1) at one level: an empty mask, and its warning
        cm.calibrate(pairs, alphas=[30000.0, 60000.0], progress=False)
    f = cm.save(tmp_path / 'cal.json')
    doc = json.loads(f.read_text())
    assert doc['config']['data'] == {'space': 'linear', 'channels': 1, 'value_range': {'lo': 0.0, 'hi': 65535.0, 'units': 'counts'}}
    assert doc['bound'] == 65535.0 and doc['config']['uncertainty']['space'] == 'linear'
    back = ConformalMask.from_file(f, model())
    assert back.channels == 1 and back.limits == cm.limits and back.bound == 65535.0
    p = back.predict(pairs[0].lr, 60000.0)
    assert p.mask.shape == p.sigma.shape == (32, 32)
    # another channel count, at prediction and from a reader
    with pytest.raises(ValueError, match='3 channel.*1-channel data'): back.predict(torch.rand(3, 16, 16), 60000.0)
    with pytest.raises(ValueError, match='x.tif has 4 channel'): back.check_input(ValueRange(0, 65535, 'counts'), 4, 'x.tif')
    # another range: from a reader, and a mask configured with another range loading the file
    with pytest.raises(ValueError, match=r'y.png was read with the value range ValueRange\(0, 255\)'):
        back.check_input(ValueRange(0, 255), 1, 'y.png')
    with pytest.raises(ValueError, match=r'cal.json was calibrated under another configuration[\s\S]*value_range'):
        linear_mask(Intensity(value_range=(0, 4095))).load(f)
    with pytest.raises(ValueError, match=r'cal.json[\s\S]*channels'):
        linear_mask(Intensity(value_range=ValueRange(0, 65535, 'counts')), channels=4).load(f)
    # the space: a photo mask cannot load it, nor an intensity mask a photo file
    with pytest.raises(ValueError, match='cal.json'): ConformalMask(model(), n_samples=4).load(f)
    # a hand-edited file: its data disagree with its metric, or are missing
    bad = json.loads(f.read_text()); bad['config']['data']['value_range']['hi'] = 255.0
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(CalibrationFileError, match="bad.json: field config.data.value_range"): ConformalMask.from_file(tmp_path / 'bad.json', model())
    bad = json.loads(f.read_text()); del bad['config']['data']
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(CalibrationFileError, match="bad.json: field config.data: missing"): ConformalMask.from_file(tmp_path / 'bad.json', model())
    bad = json.loads(f.read_text()); bad['bound'] = 1.0
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(CalibrationFileError, match="bad.json: field bound"): ConformalMask.from_file(tmp_path / 'bad.json', model())


def test_spaces_must_agree_and_photos_keep_their_configuration():
    with pytest.raises(ValueError, match="space 'linear' but the fidelity metric"):
        ConformalMask(model(), Uncertainty('box:3', space='linear'), Neighbourhood())
    with pytest.raises(ValueError, match="space 'lab' but the fidelity metric"):
        ConformalMask(model(), Uncertainty('box:3'), Intensity())
    with pytest.raises(ValueError, match="channels=1: sRGB photos"): ConformalMask(model(), channels=1)
    cfg = ConformalMask(model(), n_samples=4).config()
    assert 'data' not in cfg and 'space' not in cfg['uncertainty']     # photo calibration files are as before


def test_four_band_sum_has_bound_c_times_width(tmp_path):
    bands = (np.random.default_rng(1).random((4, 64, 64)) * 10000).astype(np.uint16)
    pairs = crops_of(tmp_path, 'b', [bands], 0, n=12, value_range=(0, 10000), channels=4)
    cm = linear_mask(Intensity('box:3', (0, 10000), bands='sum', channels=4))
    assert cm.bound == 40000 and cm.channels == 4
    cm.calibrate(pairs, alphas=[20000.0], progress=False)
    assert json.loads(cm.save(tmp_path / 'c.json').read_text())['bound'] == 40000
    with pytest.raises(ValueError, match='has 1 channel'): cm.predict(torch.rand(1, 16, 16), 20000.0)
    assert psnr_bound(cm.fidelity, 20000.0) is None and psnr_bound(Intensity(value_range=(0, 400)), 40.0) == pytest.approx(20.0)


# ---------------------------------------------------------------- readers
def test_sixteen_bit_png_and_tiff_round_trip(tmp_path):
    a = np.random.default_rng(2).integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / 'a.png')
    tifffile.imwrite(tmp_path / 'a.tif', a)
    for name in ('a.png', 'a.tif'):
        x, rng = load_intensity(tmp_path / name)
        assert rng == ValueRange(0, 65535) and x.shape == (1, 9, 11) and x.dtype == torch.float32
        assert np.array_equal((x[0].double() * 65535).round().numpy().astype(np.uint16), a), name   # no 8-bit step
    b = np.random.default_rng(3).integers(0, 4096, (4, 9, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / 'b.tif', b, photometric='minisblack', planarconfig='separate')
    x, rng = load_intensity(tmp_path / 'b.tif', value_range=(0, 4095))
    assert x.shape == (4, 9, 11) and np.array_equal((x.double() * 4095).round().numpy(), b)
    with pytest.raises(ValueError, match='b.tif has 4 channel'): load_intensity(tmp_path / 'b.tif', channels=1)
    Image.fromarray((a >> 8).astype(np.uint8)).save(tmp_path / 'c.png')
    with pytest.raises(ValueError, match='c.png is uint8'): load_intensity(tmp_path / 'c.png', value_range=(0, 65535))
    (tmp_path / 'd.tif').write_bytes(b'not a tiff')
    with pytest.raises(ValueError, match='cannot read .*d.tif'): load_intensity(tmp_path / 'd.tif')


def test_dicom_rescale_and_windows(tmp_path):
    ds = pydicom.dcmread(get_testdata_file('CT_small.dcm'))
    raw = ds.pixel_array.astype(np.float64)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.WindowCenter, ds.WindowWidth = 50, 350
    ds.save_as(tmp_path / 'scaled.dcm')
    hu, info = read_dicom(tmp_path / 'scaled.dcm')
    assert np.array_equal(hu, raw * 2 - 1000) and info['window'] == (50.0, 350.0) and info['units'] == 'HU'
    x, rng = load_intensity(tmp_path / 'scaled.dcm')                    # the file's window
    assert rng == ValueRange.window(50, 350, 'HU')
    assert torch.allclose(x[0].double(), torch.from_numpy(np.clip((raw * 2 - 1000 + 125) / 350, 0, 1)), atol=1e-6)
    assert load_intensity(tmp_path / 'scaled.dcm', window=(40, 400))[1] == ValueRange(-160, 240, 'HU')   # the user's window
    assert load_intensity(tmp_path / 'scaled.dcm', value_range=(-1000, 1000))[1] == ValueRange(-1000, 1000, 'HU')   # the file's units
    with pytest.raises(ValueError, match='MR_small.dcm holds MR values in no unit'):
        load_intensity(get_testdata_file('MR_small.dcm'), value_range=ValueRange(-1000, 1000, 'HU'))
    mr, mr_range = load_intensity(get_testdata_file('MR_small.dcm'))
    assert mr.shape == (1, 64, 64) and mr_range == ValueRange.window(600, 1600, '')
    (tmp_path / 'broken.dcm').write_bytes(b'\0' * 200)
    with pytest.raises(ValueError, match='broken.dcm'): load_intensity(tmp_path / 'broken.dcm')


# ---------------------------------------------------------------- the command line
def test_command_line_on_a_folder_of_16_bit_and_dicom_files(tmp_path, capsys):
    from conformal_superres.cli.main import main
    from skimage import data
    folder = tmp_path / 'grey'; folder.mkdir()
    for k, n in enumerate(('camera', 'moon')):
        tifffile.imwrite(folder / f'{n}.tif', getattr(data, n)()[:128, :128].astype(np.uint16) * 257)
    cal = tmp_path / 'cal.json'
    main(['calibrate', '--space', 'linear', '--data', str(folder), '--crop', '32', '--crops-per-image', '15',
          '--alphas', '20000', '-M', '3', '--out', str(cal), '--quiet'])
    doc = json.loads(cal.read_text())
    assert doc['config']['data'] == {'space': 'linear', 'channels': 1, 'value_range': {'lo': 0.0, 'hi': 65535.0, 'units': ''}}
    assert doc['bound'] == 65535.0 and doc['n'] == 30
    lr = tmp_path / 'lr.tif'; tifffile.imwrite(lr, data.camera()[200:208, 200:208].astype(np.uint16) * 257)
    main(['predict', str(lr), '--calibration', str(cal), '--out', str(tmp_path / 'pred'), '--quiet'])
    pred = tifffile.imread(tmp_path / 'pred' / 'lr_prediction.tif')
    assert pred.shape == (1, 32, 32) and pred.dtype == np.float32 and 0 <= pred.min() and pred.max() <= 65535
    assert np.load(tmp_path / 'pred' / 'lr_sigma.npy').shape == (32, 32)

    def fails(argv, contains, code):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e: main(argv)
        err = capsys.readouterr().err
        assert e.value.code == code and contains in err, (e.value.code, err)
    Image.fromarray(data.camera()[:8, :8]).save(tmp_path / 'eight.png')
    fails(['predict', str(tmp_path / 'eight.png'), '--calibration', str(cal), '--out', str(tmp_path / 'p2')], 'eight.png is uint8', 3)
    tifffile.imwrite(tmp_path / 'rgb16.tif', np.zeros((3, 8, 8), np.uint16), photometric='minisblack', planarconfig='separate')
    fails(['predict', str(tmp_path / 'rgb16.tif'), '--calibration', str(cal), '--out', str(tmp_path / 'p3')], 'rgb16.tif has 3 channel(s)', 3)
    fails(['predict', get_testdata_file('CT_small.dcm'), '--calibration', str(cal), '--out', str(tmp_path / 'p4')],
          "CT_small.dcm reads as ValueRange(0, 65535, 'HU')", 3)   # HU are not the counts of the calibration
    fails(['evaluate', '--calibration', str(cal), '--data', str(folder), '--out', str(tmp_path / 'ev')], 'Python API', 2)
    fails(['calibrate', '--space', 'linear', '--data', str(folder), '--model', 'embedded', '--out', str(tmp_path / 'x.json')], 'sRGB photos', 2)
    fails(['calibrate', '--space', 'linear', '--data', str(folder), '--window', '40', '--out', str(tmp_path / 'x.json')], 'two numbers', 2)


def test_scale_engines_refuse_intensities(tmp_path):
    cm = linear_mask(Intensity())
    with pytest.raises(ValueError, match='calibrate intensities without them'):
        cm.calibrate([(torch.rand(1, 8, 8), torch.rand(1, 16, 16))], engine='local', progress=False)
