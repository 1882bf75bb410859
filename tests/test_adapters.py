"The diffusers and spandrel adapters on tiny random-weight models built offline with the libraries' own classes: seeding, knobs recorded in the calibration, sizes, refusals, the guarantee over random splits, and the command line's calibrate/save/load/predict round trip."
import json, math
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

import importlib.util
if importlib.util.find_spec('diffusers') is None or importlib.util.find_spec('spandrel') is None:
    pytest.skip('the diffusers and spandrel extras are not installed: pip install -e ".[diffusers,spandrel]"', allow_module_level=True)

from conformal_superres.calibration import Calibrator, loss_records
from conformal_superres.data.pairs import degrade
from conformal_superres.mask import ConformalMask
from conformal_superres.models.adapters import ModelOutputError
from conformal_superres.models.diffusers_adapter import (from_diffusers, load_diffusers, optional_import, tiny_ldm_pipeline,
                                                         tiny_sd_upscaler)
from conformal_superres.models.spandrel_adapter import (SpandrelUpscaler, from_spandrel, tiny_esrgan_checkpoint,
                                                        tiny_swinir_checkpoint)
from conformal_superres.cli.main import main

pytestmark = pytest.mark.filterwarnings('ignore:torch.meshgrid')   # from inside SwinIR


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    "The tiny networks are fastest on one thread (and much slower with several on a busy machine)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def ldm_pipe(): return tiny_ldm_pipeline()

@pytest.fixture(scope='module')
def ldm(ldm_pipe): return from_diffusers(ldm_pipe, num_inference_steps=2, eta=1.0)

@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp('ckpt')
    return dict(esrgan=tiny_esrgan_checkpoint(d / 'esrgan.pth'), swinir=tiny_swinir_checkpoint(d / 'swinir.safetensors'),
                gray=tiny_esrgan_checkpoint(d / 'gray.pth', channels=1), folder=d)

def crops(n:int, side:int=32, seed:int=0)->list:
    "n random (lr, hr) crops of real photos (scikit-image's), x4."
    from skimage import data
    rng = np.random.default_rng(seed)
    photos = [torch.from_numpy(f()).permute(2, 0, 1).float() / 255 for f in (data.astronaut, data.chelsea, data.coffee)]
    out = []
    for k in range(n):
        p = photos[k % 3]
        y, x = rng.integers(0, p.shape[1] - side), rng.integers(0, p.shape[2] - side)
        hr = p[:, y:y + side, x:x + side].contiguous()
        out.append((degrade(hr, 4), hr))
    return out


# ---- diffusers: seeding, batching, knobs, sizes

def test_ldm_seeding_same_seed_same_samples_and_draws_match_calls(ldm):
    lr = torch.rand(2, 3, 8, 8)
    s = ldm.sample(lr, 2, torch.Generator().manual_seed(5))
    assert s.shape == (2, 2, 3, 32, 32) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, ldm.sample(lr, 2, torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(s, torch.stack([ldm(lr, g) for _ in range(2)]), atol=1e-5, rtol=0)
    assert (s - ldm.sample(lr, 2, torch.Generator().manual_seed(6))).abs().max() > 1e-3   # another seed, other draws
    assert (s[0] - s[1]).abs().max() > 1e-3                                              # draws differ
    twin = ldm(lr[[0, 0]], torch.Generator().manual_seed(1))
    assert (twin[0] - twin[1]).abs().max() > 1e-3                                        # each image its own noise

def test_ldm_batching_does_not_change_draws(ldm_pipe):
    lr = torch.rand(3, 3, 8, 8)
    one = from_diffusers(ldm_pipe, num_inference_steps=2, eta=1.0, max_batch=1).sample(lr, 2, torch.Generator().manual_seed(0))
    many = from_diffusers(ldm_pipe, num_inference_steps=2, eta=1.0, max_batch=6).sample(lr, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)

def test_mask_seeds_each_image_by_its_content(ldm):
    "ConformalMask's per-image seeding reaches the pipeline: an image's draws do not depend on its batch; other images, other noise."
    cm = ConformalMask(ldm, n_samples=2, seed=3)
    a, b = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    pa, sa = cm.sample_sigma(a[None])
    pab, sab = cm.sample_sigma(torch.stack([b, a]))
    torch.testing.assert_close(pab[1], pa[0], atol=1e-5, rtol=0); torch.testing.assert_close(sab[1], sa[0], atol=1e-6, rtol=0)
    same = torch.stack([a, a])
    p2, _ = cm.sample_sigma(same)
    torch.testing.assert_close(p2[0], p2[1], atol=1e-5, rtol=0)                     # same content, same seed
    other = ConformalMask(ldm, n_samples=2, seed=4).sample_sigma(a[None])[0]
    assert (other - pa).abs().max() > 1e-3                                            # another seed, another draw

def test_knobs_are_recorded_and_a_calibration_with_other_knobs_refuses_to_load(ldm, ldm_pipe, tmp_path):
    cm = ConformalMask(ldm, n_samples=2)
    cm.calibrate(crops(4, 16), alphas=(1.0,), progress=False)
    path = cm.save(tmp_path / 'ldm.json')
    assert 'num_inference_steps=2' in json.loads(path.read_text())['config']['model']
    with pytest.raises(ValueError, match='num_inference_steps=2'):
        ConformalMask.from_file(path, from_diffusers(ldm_pipe, num_inference_steps=3, eta=1.0))
    with pytest.raises(ValueError, match='eta'):
        ConformalMask.from_file(path, from_diffusers(ldm_pipe, num_inference_steps=2, eta=0.0))
    assert ConformalMask.from_file(path, from_diffusers(ldm_pipe, num_inference_steps=2, eta=1.0)).limits == cm.limits

def test_wrong_scale_wrong_size_and_unknown_knobs_fail_before_any_work(ldm_pipe):
    with pytest.raises(ValueError, match='upscales x4'): from_diffusers(ldm_pipe, scale=2)
    with pytest.raises(TypeError, match='takes no knob guidance_scale'): from_diffusers(ldm_pipe, guidance_scale=3.0)
    class Cropped(type(ldm_pipe)):                      # a pipeline that returns another size than x4
        def __call__(self, image=None, generator=None, output_type='pt', num_inference_steps=100, eta=0.0, **k):
            out = super().__call__(image=image, generator=generator, output_type=output_type,
                                   num_inference_steps=num_inference_steps, eta=eta, **k)
            out.images = out.images[..., :-4, :]
            return out
    bad = Cropped(vqvae=ldm_pipe.vqvae, unet=ldm_pipe.unet, scheduler=ldm_pipe.scheduler)
    with pytest.raises(ModelOutputError, match=r'expected \(1, 3, 64, 64\)'): from_diffusers(bad)

def test_odd_sizes_are_padded_and_cropped(ldm):
    assert ldm(torch.rand(1, 3, 7, 9), torch.Generator().manual_seed(0)).shape == (1, 3, 28, 36)

def test_sd_upscaler_knobs_batches_and_seeding():
    sd = from_diffusers(tiny_sd_upscaler(), num_inference_steps=2, guidance_scale=1.5, noise_level=30, prompt='a photo')
    assert "prompt='a photo'" in sd.name and 'noise_level=30' in sd.name and 'guidance_scale=1.5' in sd.name
    lr = torch.rand(2, 3, 8, 8)
    s = sd.sample(lr, 2, torch.Generator().manual_seed(0))
    assert s.shape == (2, 2, 3, 32, 32)
    assert torch.equal(s, sd.sample(lr, 2, torch.Generator().manual_seed(0)))
    assert (s[0] - s[1]).abs().max() > 1e-4

def test_load_diffusers_reads_a_saved_folder_offline_and_names_failures(ldm_pipe, tmp_path):
    ldm_pipe.save_pretrained(tmp_path / 'pipe')
    m = load_diffusers(str(tmp_path / 'pipe'), num_inference_steps=2)
    assert m.scale == 4 and m.name.startswith('diffusers:LDMSuperResolutionPipeline(num_inference_steps=2')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no model_index.json'): load_diffusers(str(tmp_path / 'empty'))

def test_missing_extra_names_the_install_line():
    with pytest.raises(ImportError, match=r'pip install "conformal-superres\[spandrel\]"'):
        optional_import('a_library_that_is_not_installed', 'spandrel')


# ---- spandrel: detection, refusals, tiling, perturbation

def test_spandrel_detects_architecture_scale_and_keeps_the_prediction(ckpts):
    e, s = from_spandrel(ckpts['esrgan']), from_spandrel(ckpts['swinir'])
    assert (e.scale, s.scale) == (4, 2) and e.name.startswith('spandrel:ESRGAN x4') and s.name.startswith('spandrel:SwinIR x2')
    assert 'noise=0.002, shift=0.5, flips=True' in e.name
    lr = torch.rand(2, 3, 10, 12)
    d = e.sample(lr, 3, torch.Generator().manual_seed(0))
    assert d.shape == (3, 2, 3, 40, 48) and torch.equal(d, e.sample(lr, 3, torch.Generator().manual_seed(0)))
    assert (d[0] - d[1]).abs().max() > 1e-4
    assert torch.equal(e.prediction(lr), e.upscaler(lr))          # the unperturbed network output
    assert s(torch.rand(1, 3, 5, 7), torch.Generator().manual_seed(0)).shape == (1, 3, 10, 14)   # below SwinIR's minimum: padded
    assert from_spandrel(e.upscaler.descriptor).name == e.name                                    # a descriptor works as the file

def test_spandrel_refusals_say_what_was_found(ckpts):
    d = ckpts['folder']
    with pytest.raises(ValueError, match='takes 1 and returns 1 colour channels'): from_spandrel(ckpts['gray'])
    with pytest.raises(ValueError, match='ESRGAN x4, but scale=2'): from_spandrel(ckpts['esrgan'], scale=2)
    (d / 'text.pth').write_text('not weights')
    with pytest.raises(ValueError, match='cannot read the checkpoint'): from_spandrel(d / 'text.pth')
    torch.save({'encoder.weight': torch.zeros(4, 4)}, d / 'other.pth')
    with pytest.raises(ValueError, match='unknown architecture'): from_spandrel(d / 'other.pth')
    with pytest.raises(FileNotFoundError, match='no checkpoint file'): from_spandrel(d / 'missing.pth')

def test_spandrel_weights_are_part_of_the_name(ckpts):
    other = tiny_esrgan_checkpoint(ckpts['folder'] / 'esrgan-seed1.pth', seed=1)
    assert from_spandrel(other).name != from_spandrel(ckpts['esrgan']).name

def test_tiles_match_the_whole_image_better_with_more_overlap(ckpts):
    desc = from_spandrel(ckpts['esrgan']).upscaler.descriptor
    big = torch.rand(2, 3, 70, 45)
    whole = SpandrelUpscaler(desc, tile=None)(big)
    gaps = [float((SpandrelUpscaler(desc, tile=t, overlap=o)(big) - whole).abs().max()) for t, o in ((32, 4), (40, 20), (64, 30))]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] < 1 / 255, gaps


# ---- the guarantee through an adapter, on real photo crops

def test_guarantee_holds_over_random_splits_for_a_spandrel_model(ckpts):
    "E[max D inside the mask] <= alpha, averaged over random calibration/test splits of 40 crops (n = 28 calibration)."
    model = from_spandrel(ckpts['esrgan'])
    cm = ConformalMask(model, n_samples=3)
    scored = []
    for lr, hr in crops(40, 24, seed=1):
        pred, sigma = cm.sample_sigma(lr[None])
        scored.append((sigma[0], cm.fidelity(hr[None], pred)[0]))
    rng = np.random.default_rng(0)
    alpha, risks, fractions = 0.15, [], []
    for _ in range(40):
        idx = rng.permutation(len(scored))
        cal = Calibrator(bound=cm.bound)
        for i in idx[:28]: cal.add(*scored[i])
        r = float(cal.limits(alpha))
        risks += [loss_records(*scored[i]).at(r, strict=True) for i in idx[28:]]
        fractions += [float((scored[i][0] < r).double().mean()) for i in idx[28:]]
    assert 0 < np.mean(fractions) < 1, 'the mask must be neither empty nor everything for the check to say anything'
    assert np.mean(risks) <= alpha + 0.02, (np.mean(risks), np.mean(fractions))


# ---- the command line

def run(argv, capsys):
    try: main(argv); code = 0
    except SystemExit as e: code = e.code
    out, err = capsys.readouterr()
    return code, out, err

@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp('photos')
    for k, (lr, hr) in enumerate(crops(3, 64, seed=2)):
        Image.fromarray((hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f'p{k}.png')
    Image.fromarray((crops(1, 40, seed=3)[0][1].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(d.parent / 'small.png')
    return d

def test_cli_spandrel_calibrate_save_load_predict(ckpts, photos, tmp_path, capsys):
    spec = f"spandrel:{ckpts['esrgan']}"
    cal = tmp_path / 'cal.json'
    code, out, err = run(['calibrate', '--data', str(photos), '--model', spec, '--crop', '32', '--crops-per-image', '4',
                          '-M', '3', '--alphas', '0.5,1', '--out', str(cal), '--quiet'], capsys)
    assert code == 0, err
    assert json.loads(cal.read_text())['config']['model'].startswith('spandrel:ESRGAN x4')
    small = photos.parent / 'small.png'
    code, out, err = run(['predict', '--calibration', str(cal), str(small), '--model', spec, '--alpha', '0.5',
                          '--out', str(tmp_path / 'pred'), '--quiet'], capsys)
    assert code == 0, err
    assert any((tmp_path / 'pred').iterdir())
    code, _, err = run(['predict', '--calibration', str(cal), str(small), '--out', str(tmp_path / 'p2'), '--quiet'], capsys)
    assert code == 2 and '--model spandrel:CHECKPOINT' in err and err.count('\n') == 1
    code, _, err = run(['predict', '--calibration', str(cal), str(small), '--model', spec, '--model-option', 'noise=0.01',
                        '--out', str(tmp_path / 'p3'), '--quiet'], capsys)
    assert code == 3 and 'noise=0.002' in err

def test_cli_diffusers_calibrate_then_predict_with_the_same_knobs(ldm_pipe, photos, tmp_path, capsys):
    ldm_pipe.save_pretrained(tmp_path / 'pipe')
    spec, knobs = f"diffusers:{tmp_path / 'pipe'}", ['--model-option', 'num_inference_steps=2', '--model-option', 'eta=1']
    cal = tmp_path / 'cal.json'
    code, out, err = run(['calibrate', '--data', str(photos), '--model', spec, *knobs, '--crop', '32', '--crops-per-image', '2',
                          '-M', '2', '--alphas', '1', '--out', str(cal), '--quiet'], capsys)
    assert code == 0, err
    code, out, err = run(['predict', '--calibration', str(cal), str(photos.parent / 'small.png'), '--model', spec, *knobs,
                          '--alpha', '1', '--out', str(tmp_path / 'pred'), '--quiet'], capsys)
    assert code == 0, err
    code, _, err = run(['predict', '--calibration', str(cal), str(photos.parent / 'small.png'), '--model', spec,
                        '--model-option', 'num_inference_steps=3', '--model-option', 'eta=1', '--alpha', '1',
                        '--out', str(tmp_path / 'p2'), '--quiet'], capsys)
    assert code == 3 and 'num_inference_steps=2' in err

@pytest.mark.parametrize('argv_model, code, says', [
    ('spandrel:{d}/missing.pth', 3, 'no checkpoint file at'),
    ('spandrel:{d}/text.pth', 3, 'cannot read the checkpoint'),
    ('spandrel:{d}/other.pth', 3, 'unknown architecture'),
    ('spandrel:{d}/gray.pth', 3, 'colour channels'),
    ('spandrel:', 2, 'names no model'),
    ('keras:model.h5', 2, 'unknown model'),
])
def test_cli_model_errors_are_one_line(ckpts, photos, tmp_path, capsys, argv_model, code, says):
    d = ckpts['folder']
    (d / 'text.pth').write_text('not weights'); torch.save({'encoder.weight': torch.zeros(4, 4)}, d / 'other.pth')
    status, _, err = run(['calibrate', '--data', str(photos), '--model', argv_model.format(d=d), '--crop', '32',
                          '--alphas', '1', '--out', str(tmp_path / 'c.json'), '--quiet'], capsys)
    assert status == code and says in err, err
    assert err.startswith('conformal-superres: error: ') and err.count('\n') == 1 and 'Traceback' not in err
    assert not (tmp_path / 'c.json').exists()

def test_cli_says_how_to_install_a_missing_extra(photos, tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'diffusers' else real(name, *a))
    status, _, err = run(['calibrate', '--data', str(photos), '--model', 'diffusers:some/pipeline', '--out', str(tmp_path / 'c.json')], capsys)
    assert status == 2 and 'pip install "conformal-superres[diffusers]"' in err and err.count('\n') == 1
