"Tests of conformal_superres.data.images, photos, pairs and datasets: image files in odd formats, bundled photos, degradation, crops, pairs, splits, folder loaders."
import io, pickle, struct, zlib
from pathlib import Path
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageOps

from conformal_superres.data.photos import HELD_OUT_PHOTO_IDS, PHOTO_FAMILIES, TRAIN_PHOTO_IDS, interior_paths, bundled_photos
from conformal_superres.data.pairs import Pair, PhotoPair, photo_seed, crop_to_multiple, degrade, iter_pairs, make_pairs, random_crops, split_pairs, batched
from conformal_superres.data.images import Photo, load_image, pil_to_tensor, encode_image
from conformal_superres.data.datasets import benchmark_pairs, div2k, image_folder, liu4k

RNG = np.random.default_rng(20240607)


# ---------------------------------------------------------------- helpers
def png16(a: np.ndarray, colour_type: int) -> bytes:
    "A 16-bit PNG written by hand; rows cycle through the five PNG filter types."
    h, w = a.shape[:2]
    rows = a.astype('>u2').reshape(h, -1).view(np.uint8).reshape(h, -1).astype(np.int64)
    bpp = (a.shape[2] if a.ndim == 3 else 1) * 2
    out = []
    for i in range(h):
        cur, prev, f = rows[i], rows[i - 1] if i else np.zeros_like(rows[0]), i % 5
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if f == 0: enc = cur
        elif f == 1: enc = cur - left
        elif f == 2: enc = cur - prev
        elif f == 3: enc = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            enc = cur - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(bytes([f]) + (enc % 256).astype(np.uint8).tobytes())
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 16, colour_type, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b''.join(out))) + chunk(b'IEND', b'')


def ref_rgb(a, peak):
    "Reference conversion in float64: scale, alpha on white, grey replicated; (3,H,W) float32."
    x = a.astype(np.float64) / peak
    if x.ndim == 2: x = x[..., None]
    if x.shape[-1] in (2, 4): x = x[..., :-1] * x[..., -1:] + (1 - x[..., -1:])
    if x.shape[-1] == 1: x = np.repeat(x, 3, -1)
    return torch.from_numpy(x).permute(2, 0, 1).float()


def save_u8(path, img: torch.Tensor):
    Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)


def close(a, b, eps=1e-6):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a.double() - b.double()).abs().max() <= eps, float((a.double() - b.double()).abs().max())


# ---------------------------------------------------------------- formats
@pytest.fixture(scope='module')
def odd_folder(tmp_path_factory):
    "A folder with one file per odd format, and the exact (3,H,W) float32 each must load as."
    d = tmp_path_factory.mktemp('odd')
    want = {}
    u8 = RNG.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    u16 = RNG.integers(0, 65536, (9, 13, 4), dtype=np.uint16)
    Image.fromarray(u8[..., 0]).save(d / 'grey8.png'); want['grey8'] = ref_rgb(u8[..., 0], 255)
    Image.fromarray(u16[..., 0]).save(d / 'grey16.png'); want['grey16'] = ref_rgb(u16[..., 0], 65535)
    (d / 'rgb16.png').write_bytes(png16(u16[..., :3], 2)); want['rgb16'] = ref_rgb(u16[..., :3], 65535)
    (d / 'rgba16.png').write_bytes(png16(u16, 6)); want['rgba16'] = ref_rgb(u16, 65535)
    (d / 'greyalpha16.png').write_bytes(png16(u16[..., :2], 4)); want['greyalpha16'] = ref_rgb(u16[..., :2], 65535)
    Image.fromarray(u8, 'RGBA').save(d / 'rgba8.png'); want['rgba8'] = ref_rgb(u8, 255)
    Image.fromarray(u8[..., :2], 'LA').save(d / 'greyalpha8.png'); want['greyalpha8'] = ref_rgb(u8[..., :2], 255)
    idx = RNG.integers(0, 4, (9, 13), dtype=np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    pal = Image.fromarray(idx, 'P'); pal.putpalette(palette.flatten().tolist())
    pal.save(d / 'palette.png'); want['palette'] = ref_rgb(palette[idx], 255)
    pal.info['transparency'] = 2; pal.save(d / 'palette_transparent.png', transparency=2)
    rgba = np.concatenate([palette[idx], np.where(idx == 2, 0, 255).astype(np.uint8)[..., None]], -1)
    want['palette_transparent'] = ref_rgb(rgba, 255)
    bits = RNG.integers(0, 2, (9, 13)).astype(bool)
    Image.fromarray(bits).save(d / 'bilevel.png'); want['bilevel'] = ref_rgb(bits.astype(np.uint8), 1)
    tifffile.imwrite(d / 'rgb8.tif', u8[..., :3], photometric='rgb'); want['rgb8'] = ref_rgb(u8[..., :3], 255)
    tifffile.imwrite(d / 'rgb16.tiff', u16[..., :3], photometric='rgb'); want['rgb16_tiff'] = ref_rgb(u16[..., :3], 65535)
    tifffile.imwrite(d / 'rgba16.tif', u16, photometric='rgb', extrasamples=['unassalpha']); want['rgba16_tiff'] = ref_rgb(u16, 65535)
    tifffile.imwrite(d / 'grey16.tif', u16[..., 0], photometric='minisblack'); want['grey16_tiff'] = ref_rgb(u16[..., 0], 65535)
    tifffile.imwrite(d / 'planar16.tif', np.moveaxis(u16[..., :3], -1, 0), photometric='rgb', planarconfig='separate')
    want['planar16'] = ref_rgb(u16[..., :3], 65535)
    tifffile.imwrite(d / 'white0.tif', u16[..., 0], photometric='miniswhite'); want['white0'] = ref_rgb(65535 - u16[..., 0], 65535)
    f32 = RNG.random((9, 13, 3)).astype(np.float32)
    tifffile.imwrite(d / 'float.tif', f32, photometric='rgb'); want['float'] = ref_rgb(f32, 1.0)
    Image.fromarray(u8[..., :3]).save(d / 'lossless.bmp'); want['lossless'] = ref_rgb(u8[..., :3], 255)
    return d, want


def test_every_format_loads_exactly(odd_folder):
    d, want = odd_folder
    files = {p.stem if p.stem != 'rgb16' or p.suffix == '.png' else 'rgb16_tiff': p for p in d.iterdir()}
    files['rgba16_tiff'], files['grey16_tiff'] = d / 'rgba16.tif', d / 'grey16.tif'
    for name, ref in want.items():
        got = load_image(files[name])
        assert got.dtype == torch.float32 and got.shape == (3, 9, 13), name
        assert (got.double() - ref.double()).abs().max() <= 1e-6, name


def test_lossy_formats_are_close(tmp_path):
    img = torch.from_numpy(np.kron(RNG.random((4, 5, 3)), np.ones((8, 8, 1)))).permute(2, 0, 1).float()  # smooth blocks
    u8 = (img.permute(1, 2, 0) * 255).round().byte().numpy()
    Image.fromarray(u8).save(tmp_path / 'a.jpg', quality=95)
    Image.fromarray(u8).convert('L').save(tmp_path / 'grey.jpg', quality=95)
    Image.fromarray(u8).convert('CMYK').save(tmp_path / 'cmyk.jpg', quality=95)
    Image.fromarray(u8).save(tmp_path / 'a.jp2')
    for name in ('a.jpg', 'cmyk.jpg', 'a.jp2'):
        got = load_image(tmp_path / name)
        assert got.shape == (3, 32, 40)
        assert (got - img)[:, 8:-8, 8:-8].abs().mean() < 0.03, name
    grey = load_image(tmp_path / 'grey.jpg')
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_exif_orientation_matches_pillow(tmp_path):
    base = Image.fromarray(RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    for o in range(1, 9):
        exif = Image.Exif(); exif[0x0112] = o
        base.save(tmp_path / f'o{o}.png', exif=exif)
        ref = pil_to_tensor(ImageOps.exif_transpose(Image.open(tmp_path / f'o{o}.png')))
        assert torch.equal(load_image(tmp_path / f'o{o}.png'), ref), o
        assert load_image(tmp_path / f'o{o}.png').shape[1:] == ((10, 6) if o >= 5 else (6, 10))


def test_load_image_sources_and_errors(tmp_path):
    a = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / 'x.png')
    data = (tmp_path / 'x.png').read_bytes()
    ref = load_image(tmp_path / 'x.png')
    assert torch.equal(load_image(str(tmp_path / 'x.png')), ref)
    assert torch.equal(load_image(data), ref) and torch.equal(load_image(io.BytesIO(data)), ref)
    with pytest.raises(FileNotFoundError, match='not found'): load_image(tmp_path / 'nope.png')
    with pytest.raises(IsADirectoryError, match='image_folder'): load_image(tmp_path)
    (tmp_path / 'bad.jpg').write_bytes(b'\xff\xd8 not really')
    with pytest.raises(ValueError, match='cannot read'): load_image(tmp_path / 'bad.jpg')
    tifffile.imwrite(tmp_path / 'hdr.tif', np.full((4, 4, 3), 7.5, np.float32), photometric='rgb')
    with pytest.raises(ValueError, match=r'\[0,1\]'): load_image(tmp_path / 'hdr.tif')
    tifffile.imwrite(tmp_path / 'i32.tif', np.zeros((4, 4, 3), np.int32), photometric='rgb')
    with pytest.raises(ValueError, match='8- or 16-bit'): load_image(tmp_path / 'i32.tif')


def test_image_folder(odd_folder, tmp_path):
    d, want = odd_folder
    photos = image_folder(d)
    assert [p.id for p in photos] == sorted(p.id for p in photos)
    assert len(photos) == len(list(d.iterdir())) and all(p.family == 'folder' for p in photos)
    assert {'rgb16.png', 'rgb16.tiff'} <= {p.id for p in photos}   # same stem, two files: ids keep the extension
    (tmp_path / 'a' / 'b').mkdir(parents=True); (tmp_path / '.hidden').mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / 'a' / 'b' / 'deep.png')
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / '.hidden' / 'secret.png')
    (tmp_path / 'readme.txt').write_text('x')
    assert [p.id for p in image_folder(tmp_path)] == ['a/b/deep']
    with pytest.raises(FileNotFoundError, match='recursive=True'): image_folder(tmp_path, recursive=False)
    with pytest.raises(FileNotFoundError, match='not found'): image_folder(tmp_path / 'missing')
    with pytest.raises(NotADirectoryError): image_folder(tmp_path / 'readme.txt')


# ---------------------------------------------------------------- bundled photos
def test_bundled_split_is_fixed_and_complete():
    photos = bundled_photos()
    ids = [p.id for p in photos]
    assert len(ids) == len(set(ids)) == 52
    assert set(ids) == set(TRAIN_PHOTO_IDS) | set(HELD_OUT_PHOTO_IDS)
    assert not set(TRAIN_PHOTO_IDS) & set(HELD_OUT_PHOTO_IDS)
    interior = [f'interior/{p.stem}' for p in interior_paths()]
    assert len(interior) == 39 and list(TRAIN_PHOTO_IDS) == interior[:30]
    assert [p.id for p in bundled_photos(split='train')] == list(TRAIN_PHOTO_IDS)
    assert {p.id for p in bundled_photos(split='held_out')} == set(HELD_OUT_PHOTO_IDS)
    assert {p.family for p in photos} == set(PHOTO_FAMILIES)
    assert [p.id for p in bundled_photos(['sklearn', 'matplotlib'])] == ['sklearn/china', 'sklearn/flower', 'matplotlib/grace_hopper']
    with pytest.raises(ValueError, match='choose from'): bundled_photos('div2k')
    with pytest.raises(ValueError, match="'train', 'held_out'"): bundled_photos(split='test')


def test_bundled_files_equal_the_package_functions():
    "The file shortcuts give exactly what skimage.data / load_sample_image / matplotlib return."
    from skimage import data
    from sklearn.datasets import load_sample_image
    by_id = {p.id: p for p in bundled_photos()}
    left, right, _ = data.stereo_motorcycle()
    refs = {'skimage/stereo_motorcycle_left': left, 'skimage/stereo_motorcycle_right': right,
            'sklearn/china': load_sample_image('china.jpg'), 'sklearn/flower': load_sample_image('flower.jpg')}
    for n in ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina'):
        refs[f'skimage/{n}'] = getattr(data, n)()
    for pid, a in refs.items():
        assert torch.equal(by_id[pid].load(), torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)), pid
    assert by_id['glymur/nemo'].load().shape == (3, 1456, 2592)
    hopper = by_id['matplotlib/grace_hopper'].load()
    assert hopper.shape[0] == 3 and 0 <= hopper.min() and hopper.max() <= 1


def test_thumbnails_are_small_and_close():
    p = bundled_photos('interior', split='held_out')[0]
    t = p.thumbnail(200)
    assert max(t.shape[1:]) == 200
    full = torch.nn.functional.interpolate(p.load()[None], size=t.shape[1:], mode='area')[0]
    assert (t - full).abs().mean() < 0.02


# ---------------------------------------------------------------- degradation
def _aa_bicubic_reference(x: np.ndarray, s: int) -> np.ndarray:
    "Antialiased bicubic downsampling by s, written out in float64 (Keys kernel a=-0.5 stretched by s, clipped support, renormalised)."
    def keys(t, a=-0.5):
        t = np.abs(t)
        return np.where(t < 1, (a + 2) * t**3 - (a + 3) * t**2 + 1, np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0))
    def matrix(n):
        m = np.zeros((n // s, n))
        for i in range(n // s):
            centre = (i + 0.5) * s
            lo, hi = max(int(centre - 2 * s + 0.5), 0), min(int(centre + 2 * s + 0.5), n)
            j = np.arange(lo, hi)
            w = keys((j - centre + 0.5) / s)
            m[i, lo:hi] = w / w.sum()
        return m
    return np.einsum('ih,chw,jw->cij', matrix(x.shape[1]), x, matrix(x.shape[2]))


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_degrade_matches_reference(scale):
    hr = torch.rand(3, 12 * scale, 8 * scale, dtype=torch.float64, generator=torch.Generator().manual_seed(scale))
    ref = np.clip(_aa_bicubic_reference(hr.numpy(), scale), 0, 1)
    close(degrade(hr, scale), torch.from_numpy(ref), 1e-6)
    assert degrade(hr[None].float(), scale).shape == (1, 3, 12, 8) and degrade(hr.float(), scale).dtype == torch.float32


def test_degrade_jpeg_is_pillow_round_trip():
    hr = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    lr, lrj = degrade(hr), degrade(hr, jpeg_quality=40)
    for b in range(2):
        buf = io.BytesIO()
        Image.fromarray((lr[b].permute(1, 2, 0) * 255).round().byte().numpy()).save(buf, 'JPEG', quality=40)
        assert torch.equal(lrj[b], load_image(buf.getvalue()))
    with pytest.raises(ValueError, match='crop_to_multiple'): degrade(torch.rand(3, 30, 32))
    with pytest.raises(ValueError, match='jpeg_quality'): degrade(hr, jpeg_quality=0)
    assert crop_to_multiple(torch.rand(2, 3, 30, 33), 4).shape == (2, 3, 28, 32)


# ---------------------------------------------------------------- crops, pairs, splits
def test_random_crops_reproducible_uniform_and_exact():
    img = torch.arange(5 * 5, dtype=torch.float32).reshape(1, 5, 5)
    crops = random_crops(img, 3, 9000, torch.Generator().manual_seed(0))
    corners = [(int(c[0, 0, 0]) // 5, int(c[0, 0, 0]) % 5) for c in crops]
    for c, (t, l) in zip(crops[:50], corners[:50]): assert torch.equal(c, img[:, t:t + 3, l:l + 3])
    counts = np.bincount([t * 3 + l for t, l in corners], minlength=9)
    assert counts.min() > 850 and counts.max() < 1150, counts      # 9 positions, ~1000 each
    assert torch.equal(random_crops(img, (2, 4), 7, torch.Generator().manual_seed(5)),
                       random_crops(img, (2, 4), 7, torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match='tiny is 5x5 .* smaller than the 6x3 crop'): random_crops(img, (6, 3), 1, name='tiny')


def test_make_pairs(tmp_path):
    photos = [p for p in bundled_photos('skimage') if p.id in ('skimage/coffee', 'skimage/rocket')]
    pairs = make_pairs(photos, 48, 3, scale=4, seed=7)
    assert [p.source_id for p in pairs] == ['skimage/coffee'] * 3 + ['skimage/rocket'] * 3
    for i, photo in enumerate(photos):
        g = torch.Generator().manual_seed(photo_seed(7, photo.id))
        assert torch.equal(torch.stack([p.hr for p in pairs[3 * i:3 * i + 3]]), random_crops(photo.load(), 48, 3, g))
    for p in pairs:
        lr, hr = p
        assert lr.shape == (3, 12, 12) and torch.equal(lr, degrade(hr))
    assert all(torch.equal(a.hr, b.hr) for a, b in zip(iter_pairs(photos, 48, 3, seed=7), pairs))
    assert torch.equal(make_pairs(photos[::-1], 48, 3, seed=7)[0].hr, pairs[3].hr)   # independent of the photo list
    assert not torch.equal(make_pairs(photos, 48, 3, seed=8)[0].hr, pairs[0].hr)
    jp = make_pairs(photos[:1], 48, 1, seed=7, jpeg_quality=30)[0]
    assert torch.equal(jp.hr, pairs[0].hr) and torch.equal(jp.lr, degrade(pairs[0].hr, jpeg_quality=30))
    whole = make_pairs(photos[:1], None)[0]
    assert whole.hr.shape == (3, 400, 600) and whole.lr.shape == (3, 100, 150)
    with pytest.raises(ValueError, match='use 44 or 48'): make_pairs(photos, 46, 1)
    with pytest.raises(ValueError, match='crops_per_photo=1'): make_pairs(photos, None, 2)
    small = Photo('tiny/one', 'folder', reader=lambda: np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match='tiny/one is 20x30'): make_pairs([small], 32, 1)


def test_pair_is_a_two_tuple_with_its_source():
    p = Pair(torch.zeros(3, 2, 2), torch.ones(3, 8, 8), 'x/y')
    lr, hr = p
    assert len(p) == 2 and p.lr is lr and p.hr is hr and p.source_id == 'x/y'
    q = pickle.loads(pickle.dumps(p))
    assert q.source_id == 'x/y' and torch.equal(q.hr, hr)
    assert 'x/y' in repr(p)


def test_split_pairs_random_groups():
    rng = np.random.default_rng(0)
    for trial in range(30):
        sizes = rng.integers(1, 5, rng.integers(2, 9))
        pairs = [Pair(torch.zeros(1), torch.zeros(1), f's{g}') for g, k in enumerate(sizes) for _ in range(k)]
        # a feasible n_calib: whole groups
        take = rng.random(len(sizes)) < 0.5
        take[0], take[-1] = True, False
        n = int(sizes[take].sum())
        cal, test = split_pairs(pairs, n, seed=trial)       # any sum of whole photos is found
        assert len(cal) == n and len(cal) + len(test) == len(pairs)
        assert not {p.source_id for p in cal} & {p.source_id for p in test}
        assert all(a is b for a, b in zip(cal, [p for p in pairs if any(p is c for c in cal)]))   # input order kept
    pairs = [Pair(torch.zeros(1), torch.zeros(1), f's{i // 4}') for i in range(20)]
    assert split_pairs(pairs, 8, seed=1) == split_pairs(pairs, 8, seed=1)
    assert len({tuple(p.source_id for p in split_pairs(pairs, 8, seed=s)[0]) for s in range(10)}) > 3
    with pytest.raises(ValueError, match='nearest possible sizes are 4 or 8'): split_pairs(pairs, 6)
    mixed = [Pair(torch.zeros(1), torch.zeros(1), s) for s in 'aabbb']      # photos of 2 and 3 crops
    for seed in range(10):
        cal, test = split_pairs(mixed, 3, seed=seed)
        assert [p.source_id for p in cal] == ['b'] * 3 and [p.source_id for p in test] == ['a'] * 2
        assert [p.source_id for p in split_pairs(mixed, 2, seed=seed)[0]] == ['a'] * 2
    with pytest.raises(ValueError, match='nearest possible sizes are 3 or 5'): split_pairs(mixed, 4)
    with pytest.raises(ValueError, match='nearest possible sizes are 2:'): split_pairs(mixed, 1)
    cal, test = split_pairs(pairs, 6, seed=0, by_source=False)
    assert len(cal) == 6 and len(test) == 14
    with pytest.raises(ValueError, match='between 1 and'): split_pairs(pairs, 0)
    with pytest.raises(TypeError, match='by_source=False'): split_pairs([(1, 2), (3, 4)], 1)


def test_batched_mixed_sizes_and_triples():
    a = [Pair(torch.full((3, 2, 2), float(i)), torch.zeros(3, 8, 8), 'a') for i in range(5)]
    b = [Pair(torch.zeros(3, 3, 2), torch.zeros(3, 12, 8), 'b')]
    got = batched(a[:3] + b + a[3:], 2)
    assert [tuple(x[0].shape) for x in got] == [(2, 3, 2, 2), (1, 3, 2, 2), (1, 3, 3, 2), (2, 3, 2, 2)]
    assert torch.cat([x[0][:, 0, 0, 0] for x in got]).tolist() == [0, 1, 2, 0, 3, 4]
    trip = batched([(torch.zeros(3, 2, 2), torch.zeros(3, 8, 8), torch.ones(8, 8))] * 3, 8)
    assert len(trip) == 1 and [tuple(x.shape) for x in trip[0]] == [(3, 3, 2, 2), (3, 3, 8, 8), (3, 8, 8)]
    with pytest.raises(ValueError, match='at least 1'): batched(a, 0)


def test_encode_image_round_trips_8_bit():
    x = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(load_image(encode_image(x)), (x * 255).round() / 255)
    grey = np.linspace(0, 1, 12).reshape(3, 4)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(grey)))), (grey * 255).round().astype(np.uint8))
    assert encode_image(x, 'JPEG', quality=50)[:2] == b'\xff\xd8'


# ---------------------------------------------------------------- data-set folders
def _hr_lr(seed, h=8, w=10, s=4):
    hr = torch.rand(3, h * s, w * s, generator=torch.Generator().manual_seed(seed))
    return hr, degrade(hr, s)


def test_div2k_layout(tmp_path):
    for split, ids in (('train', ('0001', '0002')), ('valid', ('0801',))):
        for kind in ('bicubic', 'unknown'):
            (tmp_path / f'DIV2K_{split}_LR_{kind}' / 'X4').mkdir(parents=True, exist_ok=True)
        (tmp_path / f'DIV2K_{split}_HR').mkdir()
        for i, id in enumerate(ids):
            hr, lr = _hr_lr(i)
            save_u8(tmp_path / f'DIV2K_{split}_HR' / f'{id}.png', hr)
            for kind in ('bicubic', 'unknown'): save_u8(tmp_path / f'DIV2K_{split}_LR_{kind}' / 'X4' / f'{id}x4.png', lr)
    items = div2k(tmp_path, 'train')
    assert [it.id for it in items] == ['div2k/train/0001', 'div2k/train/0002']
    p = items[1].load()
    assert torch.equal(p.lr, load_image(tmp_path / 'DIV2K_train_LR_bicubic' / 'X4' / '0002x4.png')) and p.source_id == 'div2k/train/0002'
    assert Path(div2k(tmp_path, 'valid', lr='unknown')[0].lr_path).parent.parent.name == 'DIV2K_valid_LR_unknown'
    gen = div2k(tmp_path, 'valid', lr=None)[0].load()
    assert torch.equal(gen.lr, degrade(gen.hr))
    # aligned crops from the official LR files
    crops = make_pairs(items, 16, 3, seed=0)
    full = items[0].load()
    for c in crops[:3]:
        hit = [(t, l) for t in range(full.lr.shape[1] - 3) for l in range(full.lr.shape[2] - 3)
               if torch.equal(full.lr[:, t:t + 4, l:l + 4], c.lr)]
        assert hit and torch.equal(full.hr[:, hit[0][0] * 4:hit[0][0] * 4 + 16, hit[0][1] * 4:hit[0][1] * 4 + 16], c.hr)
    with pytest.raises(FileNotFoundError, match='lr=None'): div2k(tmp_path, 'train', scale=3)
    with pytest.raises(FileNotFoundError, match='DIV2K_test_HR'): div2k(tmp_path, 'test')
    with pytest.raises(ValueError, match='scale=2'): make_pairs(items, 16, 1, scale=2)
    (tmp_path / 'DIV2K_train_LR_bicubic' / 'X4' / '0002x4.png').unlink()
    with pytest.raises(FileNotFoundError, match='0002x4'): div2k(tmp_path, 'train')


def test_benchmark_layouts(tmp_path):
    # 1. original distribution: image_SRF_4/img_001_SRF_4_HR.png + _LR.png
    srf = tmp_path / 'Set5' / 'image_SRF_4'; srf.mkdir(parents=True)
    for i in (1, 2):
        hr, lr = _hr_lr(i)
        save_u8(srf / f'img_00{i}_SRF_4_HR.png', hr); save_u8(srf / f'img_00{i}_SRF_4_LR.png', lr)
    save_u8(srf / 'img_001_SRF_4_bicubic.png', hr)   # other files of the distribution are ignored
    got = benchmark_pairs(tmp_path / 'Set5')
    assert [(p.id, Path(p.lr_path).name) for p in got] == [('Set5/img_001', 'img_001_SRF_4_LR.png'), ('Set5/img_002', 'img_002_SRF_4_LR.png')]
    assert [p.id for p in benchmark_pairs(srf)] == ['image_SRF_4/img_001', 'image_SRF_4/img_002']
    # 2. EDSR/BasicSR: HR/baby.png + LR_bicubic/X4/babyx4.png
    b = tmp_path / 'Set14'; (b / 'HR').mkdir(parents=True); (b / 'LR_bicubic' / 'X4').mkdir(parents=True)
    hr, lr = _hr_lr(3)
    big = torch.cat([hr, torch.rand(3, 3, hr.shape[2])], 1)         # HR 3 rows taller than 4 x LR: cut off
    save_u8(b / 'HR' / 'baboon.png', big); save_u8(b / 'LR_bicubic' / 'X4' / 'baboonx4.png', lr)
    p = benchmark_pairs(b)[0].load()
    assert p.source_id == 'Set14/baboon' and p.hr.shape == (3, 32, 40) and torch.equal(p.hr, load_image(b / 'HR' / 'baboon.png')[:, :32])
    # 3. GTmod12 + LRbicx4
    c = tmp_path / 'B100'; (c / 'GTmod12').mkdir(parents=True); (c / 'LRbicx4').mkdir()
    save_u8(c / 'GTmod12' / '3096.png', hr); save_u8(c / 'LRbicx4' / '3096.png', lr)
    assert Path(benchmark_pairs(c)[0].lr_path).parent.name == 'LRbicx4'
    # 4. a plain folder of HR images
    d = tmp_path / 'Urban100'; d.mkdir()
    save_u8(d / 'img001.png', torch.rand(3, 30, 41))
    q = benchmark_pairs(d)[0]
    assert q.lr_path is None and q.load().hr.shape == (3, 28, 40) and q.load().lr.shape == (3, 7, 10)
    # wrong sizes are refused with both sizes named
    save_u8(c / 'LRbicx4' / '3096.png', torch.rand(3, 5, 5))
    with pytest.raises(ValueError, match='HR is 32x40 but LR is 5x5'): benchmark_pairs(c)[0].load()
    (srf / 'img_002_SRF_4_LR.png').unlink()
    with pytest.raises(FileNotFoundError, match='img_002_SRF_4_LR'): benchmark_pairs(tmp_path / 'Set5')
    with pytest.raises(FileNotFoundError, match='not found'): benchmark_pairs(tmp_path / 'Set50')


def test_liu4k_layout(tmp_path):
    root = tmp_path / 'LIU4K_v2'
    for split, n in (('Train', 3), ('val', 2)):
        (root / split / 'sub').mkdir(parents=True)
        for i in range(n): save_u8(root / split / ('sub' if i else '') / f'{i:04d}.png', torch.rand(3, 16, 20))
    assert [p.id for p in liu4k(root, 'train')] == ['liu4k/train/0000', 'liu4k/train/sub/0001', 'liu4k/train/sub/0002']
    assert [p.id for p in liu4k(tmp_path, 'valid')] == ['liu4k/valid/0000', 'liu4k/valid/sub/0001']   # one level down
    assert all(p.family == 'liu4k' for p in liu4k(root, 'valid'))
    assert make_pairs(liu4k(root, 'valid'), 8, 2)[0].lr.shape == (3, 2, 2)
    with pytest.raises(FileNotFoundError, match=r"no 'test' folder .* found \['Train', 'val'\]"): liu4k(root, 'test')
    with pytest.raises(ValueError, match='split must be'): liu4k(root, 'validation')
    with pytest.raises(FileNotFoundError, match='Liu4K folder not found'): liu4k(tmp_path / 'nope')
