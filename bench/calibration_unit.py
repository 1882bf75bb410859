"""Benchmark: the calibration unit. What a crop calibration bounds, what it does not, and what a tile unit bounds.

The loss the guarantee bounds is, per unit, the largest error inside the mask, so it grows with the unit's
area. On the bundled held-out photos this measures, at each alpha, the mean over units of the largest error
inside the mask (with its standard error):

- crops: calibrated on UNIT px crops, tested on other UNIT px crops (what the guarantee covers);
- whole images, crop calibration: the same limit applied to whole IMAGE px images (not covered: above alpha);
- per tile, tile calibration: `ConformalMask(..., tile=UNIT)` calibrated on whole IMAGE px images (one tile
  each), tested per tile of the seeded grid on other whole images (covered: at most alpha);
- whole images, tile calibration: the largest error over the assembled image (not covered, for comparison).

"Whole images" are random IMAGE x IMAGE px crops of the photos (the photos themselves differ in size, and the
guarantee asks for units of one size); the standard error of a tile column is across images (the mean over
each image's tiles first). The default model is the cheap `bicubic-perturbed` one (a run of a few minutes on two
cores); `--model embedded` measures the package's own model (much slower on a CPU).

    python bench/calibration_unit.py                       # bicubic-perturbed, 96 px unit, 288 px images
    python bench/calibration_unit.py --model embedded --n-crops 300 --n-images 300 --n-test 40

Prints a markdown table; not a test.
"""
import argparse, math, sys, time, warnings
from pathlib import Path
import numpy as np
try: import conformal_superres
except ModuleNotFoundError: sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
import torch
from conformal_superres.mask import ConformalMask, UnitWarning, summarise
from conformal_superres.uncertainty import Uncertainty
from conformal_superres.fidelity import Neighbourhood
from conformal_superres.data.photos import bundled_photos
from conformal_superres.data.pairs import make_pairs


def build(name):
    if name == 'embedded':
        from conformal_superres.models.embedded import EmbeddedSR
        return EmbeddedSR.pretrained()
    from conformal_superres.models.adapters import PerturbedModel, bicubic_model
    m = PerturbedModel(bicubic_model(4), 4)
    m.halo = 4   # bicubic reaches 2 low-res pixels, the sub-pixel shift one more
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='bicubic-perturbed', choices=['bicubic-perturbed', 'embedded'])
    ap.add_argument('--unit', type=int, default=96, help='tile / crop side, high-res px (the demo crops 96 px)')
    ap.add_argument('--image', type=int, default=288, help='side of the whole images, high-res px')
    ap.add_argument('--n-crops', type=int, default=1000, help='calibration crops of the crop calibration')
    ap.add_argument('--n-images', type=int, default=1000, help='calibration images of the tile calibration (one tile each)')
    ap.add_argument('--n-test', type=int, default=60, help='test images (and test crops: 4 times as many)')
    ap.add_argument('--alphas', default='0.04,0.05,0.06')
    ap.add_argument('-M', '--n-samples', type=int, default=8)
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    alphas = [float(x) for x in a.alphas.split(',')]
    torch.manual_seed(a.seed)
    t0 = time.time()
    photos = bundled_photos(split='held_out')
    per = lambda n: math.ceil(n / len(photos))
    crops = make_pairs(photos, a.unit, per(a.n_crops + 4 * a.n_test), seed=a.seed + 1)
    images = make_pairs(photos, a.image, per(a.n_images + a.n_test), seed=a.seed + 2)
    rng = np.random.default_rng(a.seed)
    ci, ii = rng.permutation(len(crops)), rng.permutation(len(images))
    cal_crops, test_crops = [crops[i] for i in ci[:a.n_crops]], [crops[i] for i in ci[a.n_crops:a.n_crops + 4 * a.n_test]]
    cal_images, test_images = [images[i] for i in ii[:a.n_images]], [images[i] for i in ii[a.n_images:a.n_images + a.n_test]]
    model = build(a.model)
    mk = lambda tile=None: ConformalMask(model, Uncertainty(kernel='box:5'), Neighbourhood('box:5'), n_samples=a.n_samples,
                                         seed=a.seed, sample_batch=4, tile=tile)
    crop_cm = mk(); crop_cm.calibrate(cal_crops, alphas, progress=True)
    on_crops = summarise(crop_cm.evaluate(test_crops, alphas, progress=True))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UnitWarning)   # the point of this column: the guarantee does not cover it
        on_whole = summarise(crop_cm.evaluate(test_images, alphas, progress=True))
    tile_cm = mk(a.unit); tile_cm.calibrate(cal_images, alphas, progress=True)
    per_tile = summarise(tile_cm.evaluate(test_images, alphas, progress=True))
    f = lambda m, se: f"{m:.4f} ± {se:.4f}"
    mark = lambda m, alpha: ' (above alpha)' if m > alpha else ''
    print(f"\nmodel {a.model}, M = {a.n_samples}, sigma patch variance box:5, D neighbourhood box:5 (B = 3); unit {a.unit} px, "
          f"whole images {a.image} px ({(a.image / a.unit) ** 2:.0f}x the unit's area), held-out bundled photos; "
          f"{time.time() - t0:.0f} s\n")
    print(f"| alpha | crops, crop calibration (n={len(cal_crops)}, {len(test_crops)} test) "
          f"| whole images, crop calibration ({len(test_images)}) "
          f"| per {a.unit}x{a.unit} tile, tile calibration (n={len(cal_images)}; {per_tile[0]['n_tiles']} tiles) "
          f"| whole images, tile calibration (not guaranteed) |")
    print('|---:|---:|---:|---:|---:|')
    for alpha, c, w, t in zip(alphas, on_crops, on_whole, per_tile):
        print(f"| {alpha:g} | {f(c['fidelity_error'], c['fidelity_error_se'])}{mark(c['fidelity_error'], alpha)} "
              f"| {f(w['fidelity_error'], w['fidelity_error_se'])}{mark(w['fidelity_error'], alpha)} "
              f"| {f(t['fidelity_error'], t['fidelity_error_se'])}{mark(t['fidelity_error'], alpha)} "
              f"| {f(t['whole_image_error'], t['whole_image_error_se'])}{mark(t['whole_image_error'], alpha)} |")
    print("\nEach cell: the mean over units (crops, images or tiles) of the largest error inside the mask, ± its standard error.")


if __name__ == '__main__':
    main()
