"Tests of the tasks (super-resolution, colorization, denoising, inpainting) through pairs, the mask, saved calibrations and the demo."
import json
import pytest
import torch
import torch.nn.functional as F

from conformal_superres.cli.parser import parser
from conformal_superres.cli.demo import run_demo
from conformal_superres.cli.errors import UsageError
from conformal_superres.fidelity import ChromaNeighbourhood, Neighbourhood
from conformal_superres.mask import ConformalMask
from conformal_superres.models.adapters import PerturbedModel
from conformal_superres.data.pairs import batched, degrade, make_pairs
from conformal_superres.data.photos import bundled_photos
from conformal_superres.tasks import Colorization, Denoising, Inpainting, SuperResolution, as_task


def box3(x, generator=None):
    "A deterministic size-keeping 'denoiser': the mean of each 3x3 neighbourhood (no `scale` attribute)."
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode='replicate'), 3, 1)


def noisy_box3(x, generator=None):
    return (box3(x) + 0.02 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


class Up4:
    "A toy stochastic x4 upscaler."
    scale = 4
    def __call__(self, lr, generator=None):
        up = F.interpolate(lr, scale_factor=4, mode='bicubic', align_corners=False)
        return (up + 0.02 * torch.randn(up.shape, generator=generator)).clamp(0, 1)


def truths(n=12, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return F.interpolate(base, size=(size, size), mode='bilinear', align_corners=False).clamp(0, 1)


def test_super_resolution_stays_the_default():
    photos = bundled_photos('skimage', split='held_out')[:2]
    a, b = make_pairs(photos, 32, 2, seed=1), make_pairs(photos, 32, 2, seed=1, task='super-resolution')
    assert all(torch.equal(x.lr, y.lr) and torch.equal(x.hr, y.hr) for x, y in zip(a, b))
    assert torch.equal(a[0].lr, degrade(a[0].hr))
    cm = ConformalMask(Up4(), n_samples=2)
    assert cm.task == SuperResolution(4) and cm.scale == 4
    assert cm.config()['task'] == {'name': 'super-resolution', 'scale': 4}
    with pytest.raises(ValueError, match='has scale 4'):
        ConformalMask(Up4(), n_samples=2, task='denoising')


def test_size_keeping_tasks_need_no_scale():
    with pytest.raises(AttributeError, match='no `scale` attribute'):
        ConformalMask(noisy_box3, n_samples=2)
    y = truths()
    g = torch.Generator().manual_seed(0)
    pairs = [(Denoising(0.1).degrade(t, g), t) for t in y]
    cm = ConformalMask(noisy_box3, n_samples=3, task='denoising')
    cm.calibrate(batched(pairs, 4), alphas=[0.3], progress=False)
    p = cm.predict(pairs[0][0], 0.3)
    assert p.prediction.shape == (3, 32, 32) and p.mask.shape == (32, 32)
    rows = cm.evaluate(pairs, alphas=[0.3], progress=False)
    assert len(rows) == 12 and all(0 <= r['mask_fraction'] <= 1 for r in rows)


def test_wrong_output_size_names_the_task():
    shrink = lambda x, generator=None: noisy_box3(x, generator)[..., :-1]
    cm = ConformalMask(shrink, n_samples=2, task='inpainting')
    with pytest.raises(ValueError, match="the task 'inpainting'"):
        cm.sample_sigma(torch.rand(1, 3, 16, 16))
    cm = ConformalMask(noisy_box3, n_samples=2, task='colorization')
    with pytest.raises(ValueError, match="under the task 'colorization'"):
        cm.calibrate([(torch.rand(3, 16, 16), torch.rand(3, 32, 32))], progress=False)


def test_a_calibration_is_refused_for_another_task(tmp_path):
    y = truths(8)
    pairs = [(Colorization().degrade(t), t) for t in y]
    cm = ConformalMask(noisy_box3, n_samples=2, task='colorization', fidelity=ChromaNeighbourhood())
    cm.calibrate(pairs, alphas=[0.5], progress=False)
    f = cm.save(tmp_path / 'col.json')
    assert json.loads(f.read_text())['config']['task'] == {'name': 'colorization'}
    for other in ('denoising', Inpainting(0.5), SuperResolution(1)):
        with pytest.raises(ValueError, match=r"calibrated for the task \{'name': 'colorization'\}"):
            ConformalMask(noisy_box3, n_samples=2, task=other, fidelity=ChromaNeighbourhood()).load(f)
    again = ConformalMask.from_file(f, noisy_box3)
    assert again.task == Colorization() and again.limits == cm.limits


def test_perturbed_classical_denoiser_on_photo_pairs():
    "The tutorial's route in small: a deterministic filter made random by PerturbedModel, pairs from make_pairs."
    photos = bundled_photos('skimage', split='held_out')[:3]
    pairs = make_pairs(photos, 32, 4, seed=0, task=Denoising(0.08))
    assert all(p.lr.shape == p.hr.shape == (3, 32, 32) for p in pairs)
    model = PerturbedModel(box3, scale=1, noise=0.02)
    cm = ConformalMask(model, n_samples=3, fidelity=Neighbourhood('box:5'), task='denoising')
    assert cm.task == Denoising(0.1)    # the name gives the default noise level
    cm = ConformalMask(model, n_samples=3, fidelity=Neighbourhood('box:5'), task=Denoising(0.08))
    cm.calibrate(batched(pairs[:9]), alphas=[0.5], progress=False)
    assert cm.evaluate(batched(pairs[9:]), alphas=[0.5], progress=False)


def test_demo_parser_takes_a_task():
    assert parser().parse_args(['demo', '--task', 'colorization']).task == 'colorization'
    assert parser().parse_args(['demo']).task == 'super-resolution'
    with pytest.raises(UsageError, match="invalid choice: 'deblurring'"):
        parser().parse_args(['demo', '--task', 'deblurring'])
    with pytest.raises(UsageError, match='no model for the task'):
        run_demo(task='denoising')


def _colorizer_or_skip():
    from conformal_superres.models.colorizer import WEIGHTS_PATH, load_colorizer
    if not WEIGHTS_PATH.exists(): pytest.skip(f"no colorizer weights at {WEIGHTS_PATH}")
    return load_colorizer()


def test_colorization_demo_small(tmp_path):
    "The colorization demo on a small configuration: the report, its metric, and the mean error in the mask under every alpha."
    model = _colorizer_or_skip()
    assert ConformalMask(model, n_samples=2).task == Colorization()   # the colorizer says which task it does
    photos = bundled_photos('skimage', split='held_out')[:6]
    alphas = (0.08, 0.12, 0.2)
    r = run_demo(tmp_path, crop=32, crops_per_photo=8, n_samples=4, alphas=alphas, photos=photos, model=model,
                 progress=False, task='colorization')
    assert r['task'] == 'colorization' and r['n_calib'] + r['n_test'] == 48
    assert sorted(f.name for f in tmp_path.iterdir()) == ['calibration.json', 'evaluation.json', 'examples.png', 'risk.png',
                                                          'table.csv', 'table.md']
    table = (tmp_path / 'table.md').read_text()
    assert 'chroma_neighbourhood' in table and 'Task colorization' in table
    cal = json.loads((tmp_path / 'calibration.json').read_text())
    assert cal['config']['task'] == {'name': 'colorization'} and cal['config']['fidelity']['name'] == 'chroma_neighbourhood'
    for row in r['summary']:
        assert row['fidelity_error'] <= row['alpha'], row


def test_cli_calibrate_and_evaluate_the_colorizer(tmp_path):
    "calibrate --model colorizer makes grey inputs from the folder's images; evaluate rebuilds the model and the task from the file."
    _colorizer_or_skip()
    from PIL import Image
    from skimage import data as skdata
    from conformal_superres.cli.main import main
    folder = tmp_path / 'photos'; folder.mkdir()
    Image.fromarray(skdata.astronaut()[:96, :96]).save(folder / 'a.png')
    Image.fromarray(skdata.chelsea()[:96, :96]).save(folder / 'b.png')
    cal = tmp_path / 'cal.json'
    main(['calibrate', '--model', 'colorizer', '--data', str(folder), '--crop', '32', '--crops-per-image', '4', '-M', '2',
          '--alphas', '0.5', '--fidelity', 'chroma_neighbourhood', '--fidelity-kernel', 'box:3', '--out', str(cal), '--quiet'])
    cfg = json.loads(cal.read_text())['config']
    assert cfg['task'] == {'name': 'colorization'} and cfg['fidelity'] == {'name': 'chroma_neighbourhood', 'kernel': 'box:3'}
    main(['evaluate', '--calibration', str(cal), '--data', str(folder), '--crop', '32', '--out', str(tmp_path / 'ev'), '--quiet'])
    assert (tmp_path / 'ev' / 'table.md').exists()
