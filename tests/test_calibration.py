"""Statistical and exactness tests of `conformal_superres.calibration`.

Every test draws fresh random inputs; the seed is part of each failure message, so a failure can be
replayed with `CONFORMAL_SUPERRES_SEED=<seed> pytest tests/test_calibration.py`.
"""
import json, math, os, warnings
import numpy as np
import pytest
import torch

from fractions import Fraction
from conformal_superres.calibration import (Calibrator, Records, brute_force_threshold, calibrate_threshold,
                                            largest_below, limit_mask, loss_records, mask_loss)

from conftest import SEED   # CONFORMAL_SUPERRES_SEED, or fresh: printed with every test
Z = 4.5   # one-sided tolerance in standard errors: P(Z > 4.5) = 3.4e-6 per comparison, 6 comparisons: < 1e-4 per run




def rng_for(name):
    "A fresh generator per test, derived from the session seed."
    return np.random.default_rng([SEED, sum(map(ord, name))])


def quiet(f, *args, **kw):
    "Call f with the 'too few calibration images' warning silenced (edge alphas trigger it on purpose)."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return f(*args, **kw)


def random_instance(rng, bound):
    "n small images (sizes vary per image); sigma with few distinct values (ties) or continuous; D on a 1/8 grid."
    n = int(rng.integers(1, 9))
    kind = rng.choice(['few', 'continuous', 'all-equal', 'two'])
    top = int(round(bound * 8))
    sig, fid = [], []
    for _ in range(n):
        h, w = int(rng.integers(1, 6)), int(rng.integers(1, 7))
        if kind == 'few': s = rng.integers(0, 4, (h, w)) / 4
        elif kind == 'two': s = rng.integers(0, 2, (h, w)) * 1.5 - 0.5
        elif kind == 'all-equal': s = np.full((h, w), 0.7)
        else: s = rng.random((h, w))
        dkind = rng.choice(['grid', 'grid', 'zero', 'B', 'equal', 'extremes'])
        if dkind == 'grid': d = rng.integers(0, top + 1, (h, w)) / 8
        elif dkind == 'zero': d = np.zeros((h, w))
        elif dkind == 'B': d = np.full((h, w), bound)
        elif dkind == 'equal': d = np.full((h, w), rng.integers(0, top + 1) / 8)
        else: d = rng.choice([0., bound], (h, w))
        sig.append(s.astype(rng.choice([np.float32, np.float64])))
        fid.append(d.astype(rng.choice([np.float32, np.float64])))
    return sig, fid


def edge_alphas(rng, n, bound):
    "Random alphas plus the edges: B, exactly B/(n+1), just above and below it, and a tiny one."
    at = bound / (n + 1)
    a = [bound, at, np.nextafter(at, np.inf), np.nextafter(at, 0), 1e-6, *rng.uniform(0, bound, 6)]
    a += list(rng.integers(1, int(round(bound * 8 * (n + 1))) + 1, 4) / 8 / (n + 1))  # R values on the grid: ties with alpha
    return np.array([x for x in a if 0 < x <= bound])


def test_matches_brute_force():
    rng = rng_for('brute')
    for it in range(500):
        bound = float(rng.choice([3.0, 1.0, 2.5]))
        sig, fid = random_instance(rng, bound)
        alphas = edge_alphas(rng, len(sig), bound)
        ref = quiet(brute_force_threshold, sig, fid, alphas, bound)
        got = quiet(calibrate_threshold, sig, fid, alphas, bound)
        msg = f"SEED={SEED} instance {it}: alphas {alphas.tolist()}"
        np.testing.assert_array_equal(got, ref, err_msg=msg)
        if it % 5 == 0:  # one alpha at a time, and torch inputs, give the same
            one = [quiet(calibrate_threshold, sig, fid, float(a), bound) for a in alphas]
            np.testing.assert_array_equal(one, ref, err_msg=msg)
            tt = quiet(calibrate_threshold, [torch.from_numpy(s) for s in sig], [torch.from_numpy(d) for d in fid], alphas, bound)
            np.testing.assert_array_equal(tt, ref, err_msg=msg)
        # the threshold is bit for bit a calibration sigma value, or +-inf
        values = np.concatenate([s.ravel().astype(np.float64) for s in sig])
        assert all(np.isinf(t) or t in values for t in got), msg


def test_thresholds_meet_their_definition():
    "Feasible at t_alpha, infeasible at the next calibration value: checked with `mask_loss` directly, in exact arithmetic."
    rng = rng_for('definition')
    for it in range(100):
        sig, fid = random_instance(rng, 3.0)
        n = len(sig)
        values = np.unique(np.concatenate([s.ravel() for s in sig]).astype(np.float64))
        total = lambda t: sum(Fraction(mask_loss(s, d, t)) for s, d in zip(sig, fid)) + 3   # (n+1) R(t), exactly
        for a in edge_alphas(rng, n, 3.0):
            t, cap = quiet(calibrate_threshold, sig, fid, a, 3.0), Fraction(repr(float(a))) * (n + 1)   # alpha as written
            nxt = values[values > t]
            if t == -np.inf: assert total(values[0]) > cap or Fraction(3) > cap
            elif t == np.inf: assert total(values[-1]) <= cap
            else: assert total(t) <= cap < total(nxt[0]), f"SEED={SEED} {it}"


def naive_records(s, d):
    "Records from their definition: for every distinct sigma value, the max D at or below it."
    s, d = np.asarray(s, np.float64).ravel(), np.asarray(d, np.float64).ravel()
    out, prev = [], 0.
    for v in np.unique(s):
        level = d[s <= v].max()
        if level > prev: out.append((v, level)); prev = level
    return np.array([v for v, _ in out]), np.array([l for _, l in out])


def test_records_on_larger_maps():
    "Maps large enough for the pre-sort filter: ties, negative sigma, monotone D (every pixel a record), dtypes."
    rng = rng_for('records')
    for it in range(91):
        h, w = rng.integers(33, 60, 2)
        kind = it % 7
        if kind == 6: s = rng.choice(np.array([-0.0, 0.0, 0.5, -1.0], np.float32), (h, w))  # -0.0 ties with 0.0
        elif kind == 0: s = rng.random((h, w)).astype(np.float32)
        elif kind == 1: s = (rng.integers(-20, 50, (h, w)) / 7).astype(np.float32)
        elif kind == 2: s = (rng.standard_normal((h, w)) * 1e3).astype(np.float16)
        elif kind == 3: s = rng.random((h, w))
        elif kind == 4: s = rng.integers(0, 300, (h, w)).astype(np.int16)
        else: s = np.full((h, w), 2.0, np.float32)
        d = np.clip(np.abs(rng.standard_normal((h, w))) * rng.uniform(0.1, 2), 0, 3).astype(rng.choice([np.float32, np.float64]))
        if it % 7 == 0:  # D increasing with sigma: every distinct value is a record
            d = np.sort(d.ravel())[np.argsort(np.argsort(s.ravel(), kind='stable'), kind='stable')].reshape(h, w)
        r = loss_records(s, d, 3.0)
        rs, rl = naive_records(s, d)
        np.testing.assert_array_equal(r.sigma, rs, err_msg=f"SEED={SEED} {it}")
        np.testing.assert_array_equal(r.loss, rl, err_msg=f"SEED={SEED} {it}")
        sv = np.unique(s.astype(np.float64))
        assert r.n_pixels == s.size
        t = rng.choice(sv, 5)
        naive = lambda x, m: float(np.asarray(d, np.float64)[m].max()) if m.any() else 0.
        np.testing.assert_array_equal(r.at(t), [naive(x, s.astype(np.float64) <= x) for x in t])
        np.testing.assert_array_equal(r.at(t, strict=True), [naive(x, s.astype(np.float64) < x) for x in t])
    bf = torch.rand(40, 50, dtype=torch.bfloat16)
    r = loss_records(bf, bf.float() * 2)
    np.testing.assert_array_equal(r.sigma, naive_records(bf.float().numpy(), bf.float().numpy() * 2)[0])


def calibration_set(rng, n, h=(20, 60)):
    "n maps big enough for the filter, continuous or tied sigma; D on a grid (exact sums)."
    sig, fid = [], []
    for i in range(n):
        sh = tuple(rng.integers(*h, 2))
        s = rng.random(sh).astype(np.float32)
        if i % 3 == 0: s = np.round(s * 16) / 16
        sig.append(s)
        fid.append((np.floor(np.clip(np.abs(rng.standard_normal(sh)) * s * 2, 0, 3) * 64) / 64).astype(np.float32))
    return sig, fid


def reference_on_sorted_maps(sig, fid, alphas, bound):
    "The exact threshold by evaluating R at every calibration value through sorted running maxima (medium sizes)."
    values = np.unique(np.concatenate([s.ravel() for s in sig]).astype(np.float64))
    total = np.zeros(values.size)
    for s, d in zip(sig, fid):
        o = np.argsort(s.ravel(), kind='stable')
        ss, run = s.ravel()[o].astype(np.float64), np.maximum.accumulate(d.ravel()[o].astype(np.float64))
        k = np.searchsorted(ss, values, side='right')
        total += np.where(k > 0, run[np.maximum(k - 1, 0)], 0.)
    out = []
    for a in alphas:
        ok = total + bound <= a * (len(sig) + 1)
        out.append(-np.inf if not ok.any() else np.inf if ok.all() else values[ok][-1])
    return np.array(out)


def test_calibrator_streaming_and_merge():
    rng = rng_for('merge')
    for it in range(15):
        n = int(rng.integers(2, 25))
        sig, fid = calibration_set(rng, n)
        alphas = np.concatenate([rng.uniform(3 / (n + 1), 3, 8), [3.0]])
        exact = calibrate_threshold(sig, fid, alphas)
        np.testing.assert_array_equal(exact, reference_on_sorted_maps(sig, fid, alphas, 3.0), err_msg=f"SEED={SEED} {it}")
        whole = Calibrator()
        for s, d in zip(sig, fid): whole.add(s, d)
        # the same images split into parts, added in a random order, parts merged in a random order
        order = rng.permutation(n)
        cuts = np.sort(rng.choice(np.arange(1, n), int(rng.integers(1, min(4, n - 1) + 1)), replace=False))
        parts = []
        for chunk in np.split(order, cuts):
            c = Calibrator()
            for i in chunk: c.add(torch.from_numpy(sig[i]) if i % 2 else sig[i], fid[i])
            parts.append(c)
        rng.shuffle(parts)
        merged = parts[0]
        for p in parts[1:]: merged.merge(p)
        assert merged.n == n
        np.testing.assert_array_equal(merged.limits(alphas), whole.limits(alphas))
        t = rng.uniform(-0.1, 1.1, 50)
        np.testing.assert_array_equal(merged.risk(t), whole.risk(t))
        # the limits give the exact thresholds back, and the streaming masks are the exact masks on every image
        np.testing.assert_array_equal(largest_below(sig, merged.limits(alphas)), exact)
        for a, t in zip(alphas, exact):
            for s in sig[:5]: np.testing.assert_array_equal(merged.mask(s, a), s <= t)
        # serialisation round trip, through JSON text
        back = Calibrator.from_dict(json.loads(json.dumps(merged.to_dict(), allow_nan=False)))
        np.testing.assert_array_equal(back.limits(alphas), merged.limits(alphas))
        np.testing.assert_array_equal(back.risk(t), merged.risk(t))
        assert back.n == n and back.bound == merged.bound


def test_calibrator_on_2x3_example():
    c = Calibrator(1.0).add(np.array([[0.1, 0.3, 0.3], [0.2, 0.5, 0.4]]), np.array([[0.5, 0.25, 1.0], [0.5, 0.75, 0.125]]))
    assert c.n == 1 and c.risk(0.3) == 1.0 and c.risk(0.0) == 0.5
    assert quiet(c.limits, 0.4) == -np.inf  # alpha < B/(n+1) = 0.5
    assert c.limits(0.75) == 0.3 and c.limits(1.0) == np.inf


# ---------------------------------------------------------------------------------------------------
# The guarantee on synthetic exchangeable data.
#
# Each image j has its own random scale c_j; sigma_p ~ U(0, 1) independently and
# D_p = min(c_j * sigma_p * |z_p|, B) with z_p standard normal, so sigma is informative of D (the error
# grows with sigma) but does not determine it. Images are i.i.d., hence exchangeable.
#
# Upper bound (Theorem 2.1): E[l_test(t_alpha)] <= alpha.
# Lower bound (conformal risk control, the "not too conservative" side): when the losses have no
# simultaneous jumps, E[l_test] >= alpha - 2B/(n+1). Here sigma is continuous, so with probability one
# no two pixels (of the same or of different images) share a sigma value: sum_i l_i(t) jumps by one
# image's increment (at most B) at a time, which is what the bound needs. (With ties in sigma across
# images, several images' losses jump at once and the risk can sit far below alpha.) The threshold is a
# calibration sigma value rather than the supremum over all t; the test pixels that fall between it and
# the next calibration value are a negligible fraction, well inside the three standard errors.
# ---------------------------------------------------------------------------------------------------

def synthetic_images(rng, k, size, bound):
    c = rng.uniform(0.2, 1.5, (k, 1, 1))
    s = rng.random((k, size, size))
    d = np.minimum(c * s * np.abs(rng.standard_normal((k, size, size))), bound)
    return s, d


def test_guarantee_on_exchangeable_splits():
    rng = rng_for('guarantee')
    bound, n, m, size, splits = 1.0, 40, 40, 12, 240
    alphas = np.array([0.15, 0.3, 0.5])
    risks = np.zeros((splits, alphas.size))
    for k in range(splits):
        g = np.random.default_rng(rng.integers(2**63))  # a fresh pool per split
        s, d = synthetic_images(g, n + m, size, bound)
        perm = g.permutation(n + m)
        cal, test = perm[:n], perm[n:]
        c = Calibrator(bound)
        for i in cal: c.add(s[i], d[i])
        for j, a in enumerate(alphas):   # the product's mask, {sigma < r*}
            risks[k, j] = np.where(c.mask(s[test], a), d[test], 0).max(axis=(1, 2)).mean()
    mean, se = risks.mean(0), risks.std(0, ddof=1) / math.sqrt(splits)
    msg = f"SEED={SEED}: mean test risk {mean} (se {se}) at alphas {alphas}"
    assert (mean <= alphas + Z * se).all(), msg
    assert (mean >= alphas - 2 * bound / (n + 1) - Z * se).all(), msg


def test_guarantee_check_can_fail():
    "The check above (same tolerance Z) rejects masks calibrated for a larger level, alpha + 4B/(n+1), by the same code path."
    rng = rng_for('power')
    bound, n, m, size, splits, alpha = 1.0, 40, 40, 12, 100, 0.15
    risks = []
    for k in range(splits):
        g = np.random.default_rng(rng.integers(2**63))
        s, d = synthetic_images(g, n + m, size, bound)
        c = Calibrator(bound)
        for i in range(n): c.add(s[i], d[i])
        risks.append(np.where(c.mask(s[n:], alpha + 4 * bound / (n + 1)), d[n:], 0).max(axis=(1, 2)).mean())
    risks = np.array(risks)
    assert risks.mean() > alpha + Z * risks.std(ddof=1) / math.sqrt(splits), f"SEED={SEED}: {risks.mean()}"


# ---------------------------------------------------------------------------------------------------
# Bad inputs: each raises (or warns) with a message that says what was wrong and what to do.
# ---------------------------------------------------------------------------------------------------

def good(n=3):
    rng = rng_for('good')
    return [rng.random((4, 5)) for _ in range(n)], [rng.random((4, 5)) for _ in range(n)]


def test_shape_mismatch_names_image_and_shapes():
    sig, fid = good()
    fid[1] = np.zeros((4, 6))
    with pytest.raises(ValueError, match=r"image 1: \(4, 5\) vs \(4, 6\); compute both on the same crop"):
        calibrate_threshold(sig, fid, 0.9)


@pytest.mark.parametrize('which,value', [('sigma', np.nan), ('sigma', np.inf), ('fidelity', np.nan), ('fidelity', -np.inf)])
def test_nan_and_inf(which, value):
    sig, fid = good()
    (sig if which == 'sigma' else fid)[2][1, 3] = value
    with pytest.raises(ValueError, match=rf"{which} of image 2 contains NaN or inf \(1 values, first at \(1, 3\)\)"):
        calibrate_threshold(sig, fid, 0.9)


@pytest.mark.parametrize('value', [-0.25, 3.5])
def test_fidelity_outside_bound(value):
    sig, fid = good()
    fid[1][2, 2] = value
    with pytest.raises(ValueError, match=rf"fidelity of image 1 has value {value:g} at \(2, 2\), outside \[0, B=3\]"):
        calibrate_threshold(sig, fid, 0.9)
    with pytest.raises(ValueError, match="outside"):
        Calibrator().add(sig[1], fid[1])


@pytest.mark.parametrize('alpha', [0, -0.1, 3.01, np.nan, [0.5, 4.0]])
def test_alpha_outside_range(alpha):
    sig, fid = good()
    with pytest.raises(ValueError, match=r"outside \(0, B=3\]"):
        calibrate_threshold(sig, fid, alpha)


def test_empty_calibration_set():
    with pytest.raises(ValueError, match="empty calibration set"):
        calibrate_threshold([], [], 0.5)
    with pytest.raises(ValueError, match="no images"):
        Calibrator().limits(0.5)


def test_maps_must_be_2d():
    sig, fid = good()
    with pytest.raises(ValueError, match=r"sigma of image 0 has shape \(1, 4, 5\); expected one 2-D map"):
        calibrate_threshold([sig[0][None]], [fid[0][None]], 0.9)
    with pytest.raises(ValueError, match=r"fidelity of image 0 has shape \(20,\)"):
        calibrate_threshold([sig[0]], [fid[0].ravel()], 0.9)
    with pytest.raises(ValueError, match="2 sigma maps but 3 fidelity maps"):
        calibrate_threshold(sig[:2], fid, 0.9)
    # a (n, H, W) stack is a sequence of 2-D maps; at alpha=1.2 the threshold is a finite sigma value (sum of the
    # three losses <= 1.8: one pixel is always feasible, the three maxima of 20 uniforms almost never are)
    t = calibrate_threshold(sig, fid, 1.2)
    assert np.isfinite(t) and t in np.concatenate([s.ravel() for s in sig]), (SEED, t)
    assert calibrate_threshold(np.stack(sig), np.stack(fid), 1.2) == t, SEED


def test_too_few_images_warns_and_gives_empty_mask():
    sig, fid = good(3)  # B/(n+1) = 0.75
    with pytest.warns(UserWarning, match=r"n >= B/alpha - 1 = 29 calibration images are needed"):
        assert calibrate_threshold(sig, fid, 0.1) == -np.inf
    with pytest.warns(UserWarning, match="mask is empty"):
        t = calibrate_threshold(sig, fid, [0.1, 2.9])
    assert t[0] == -np.inf and t[1] > -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # exactly at B/(n+1) is allowed: no warning
        calibrate_threshold(sig, fid, 0.75)


def test_merge_and_from_dict_refuse_mismatches():
    with pytest.raises(ValueError, match="different bounds"):
        Calibrator(3.0).merge(Calibrator(1.0))
    with pytest.raises(ValueError, match="not a Calibrator summary"):
        Calibrator.from_dict({'kind': 'something else'})
    with pytest.raises(ValueError, match="positive finite"):
        Calibrator(0)


def test_limit_mask_is_exact_in_every_dtype():
    "sigma < r* in sigma's own dtype equals the float64 comparison, also for limits the dtype cannot hold."
    rng = rng_for('limit-mask')
    for it in range(50):
        base = rng.random(200)
        lim = float(rng.choice(base)) + float(rng.choice([0., 1e-9, -1e-9, 1e-13, -1e-13]))
        for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            x = torch.from_numpy(base).to(dt)
            assert torch.equal(limit_mask(x, lim), x.double() < lim), f"SEED={SEED} {it} {dt}"
        for dt in (np.float16, np.float32, np.float64):
            x = base.astype(dt)
            np.testing.assert_array_equal(limit_mask(x, lim), x.astype(np.float64) < lim, err_msg=f"SEED={SEED} {it} {dt}")
    # the case the test is there for: comparing in float32 would round the limit onto a sigma value
    x, lim = torch.tensor([0.3], dtype=torch.float32), float(np.float32(0.3)) + 1e-12
    assert bool(limit_mask(x, lim)) and not bool(x < lim)


def real_instance(rng, bound):
    "A few small images with tied sigma values and real-valued (not grid) D."
    n = int(rng.integers(1, 6))
    sig = [rng.integers(0, 6, tuple(rng.integers(1, 4, 2))) / 5 for _ in range(n)]
    return sig, [rng.uniform(0, bound, s.shape) for s in sig]


def risk_values(sig, fid, bound):
    "(sum_i l_i(u) + B)/(n+1) at every calibration value u, computed in float64 (so possibly one rounding off the truth)."
    cands = np.unique(np.concatenate([s.ravel() for s in sig]))
    tot = [sum(float(d[s <= u].max()) if (s <= u).any() else 0. for s, d in zip(sig, fid)) for u in cands]
    return np.array([(t + bound) / (len(sig) + 1) for t in tot])


def test_exact_feasibility_with_alpha_at_risk_values():
    "Real-valued D, alpha set at risk values: t_alpha, r* and the masks agree with exact-arithmetic brute force."
    rng = rng_for('exact-real')
    hits = 0
    for it in range(400):
        bound = float(rng.choice([1.0, 3.0]))
        sig, fid = real_instance(rng, bound)
        al = risk_values(sig, fid, bound)
        al = np.unique(np.concatenate([al, np.nextafter(al, 0), np.nextafter(al, 9)]))
        al = al[(al > 0) & (al <= bound)]
        if not al.size: continue
        msg = f"SEED={SEED} instance {it}"
        t, r = quiet(brute_force_threshold, sig, fid, al, bound), quiet(brute_force_threshold, sig, fid, al, bound, limit=True)
        np.testing.assert_array_equal(quiet(calibrate_threshold, sig, fid, al, bound), t, err_msg=msg)
        c = Calibrator(bound)
        for s, d in zip(sig, fid): c.add(s, d)
        np.testing.assert_array_equal(quiet(c.limits, al), r, err_msg=msg)
        # the float sum and the exact one disagree here: the case the exact arithmetic is for
        n = len(sig)
        for a in al:
            for u in np.unique(np.concatenate([s.ravel() for s in sig])):
                ls = [float(d[s <= u].max()) if (s <= u).any() else 0. for s, d in zip(sig, fid)]
                hits += (sum(ls) + bound <= a * (n + 1)) != (sum(map(Fraction, ls)) + Fraction(bound) <= Fraction(a) * (n + 1))
    assert hits > 0, "no instance where float rounding would decide differently: the test would not see a float sweep"


def test_the_two_counterexamples():
    "The review's counterexamples: exact answers from calibrate_threshold, Calibrator.mask and ConformalMask."
    from conformal_superres.mask import ConformalMask
    s1, d1 = np.array([[1., 2, 3, 4, 5]]), np.array([[.5, 0, 0, 0, 0]])
    s2, d2 = np.array([[3.5, 6]]), np.array([[2., 0]])
    cases = [([s1, s2] * 5, [d1, d2] * 5, 0.9, 3.0, 3.5),
             ([np.array([[.1, .2]]), np.array([[.15, .3]])], [np.array([[2.2, 1.4]]), np.array([[1.9, 2.0]])],
              (2.2 + 2.0 + 3) / 3, 0.2, 0.3)]
    for sig, fid, a, t, r in cases:
        assert calibrate_threshold(sig, fid, a, 3.0) == t and brute_force_threshold(sig, fid, a, 3.0) == t
        c = Calibrator(3.0)
        for s, d in zip(sig, fid): c.add(s, d)
        assert c.limits(a) == r
        for s in sig: np.testing.assert_array_equal(c.mask(s, a), s <= t)
        cm = ConformalMask(_MapModel(sig), uncertainty=_MapSigma(sig), fidelity=_MapFidelity(fid), n_samples=2)
        pairs = [(_code(i, s.shape), _code(i, s.shape)) for i, s in enumerate(sig)]
        cm.calibrate(pairs, alphas=[a], progress=False)
        assert cm.limit(a) == r
        for i, s in enumerate(sig[:2]):
            p = cm.predict(_code(i, s.shape), a)
            np.testing.assert_array_equal(p.mask.numpy(), s <= t)
            np.testing.assert_array_equal(p.mask.numpy(), c.mask(s, a))
        rows = cm.evaluate(pairs[:2], alphas=[a], progress=False)
        assert [row['fidelity_error'] for row in rows] == [float(d[s <= t].max()) if (s <= t).any() else 0. for s, d in zip(sig[:2], fid[:2])]


def _code(i, shape):
    "A (3,h,w) image whose pixels name image i."
    return torch.full((3, *shape), (i + 1) / 100, dtype=torch.float64)


def _index(x):
    return int(round(float(x.flatten()[0]) * 100)) - 1


class _MapModel:
    "A deterministic x1 'model' (the identity): the image carries its index."
    scale, name = 1, 'map-model'
    def __init__(self, sig): self.sig = sig
    def __call__(self, lr, generator=None): return lr.clone()


class _MapSigma:
    "An uncertainty 'estimator' that returns the given sigma map of the image its samples name."
    def __init__(self, sig): self.sig = sig
    def __call__(self, chunks):
        first = next(iter(chunks))
        for _ in chunks: pass
        return torch.stack([torch.from_numpy(self.sig[_index(first[0, b])]) for b in range(first.shape[1])])
    def config(self): return {'kind': 'map-sigma'}


class _MapFidelity:
    "A fidelity 'metric' (B = 3) that returns the given D map of the image its truth names."
    bound = 3.0
    def __init__(self, fid): self.fid = fid
    def __call__(self, hr, pred): return torch.stack([torch.from_numpy(self.fid[_index(h)]) for h in hr])
    def config(self): return {'kind': 'map-fidelity'}


def test_too_few_images_warning_points_at_the_callers_line():
    "Raised several calls deep (ConformalMask -> Calibrator -> the sweep), the warning names the user's file and line."
    import inspect
    from conformal_superres.mask import ConformalMask
    from conformal_superres.models.adapters import PerturbedModel, bicubic_model
    pairs = [(torch.rand(3, 8, 8), torch.rand(3, 32, 32)) for _ in range(3)]
    cm = ConformalMask(PerturbedModel(bicubic_model(4), 4), n_samples=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        line = inspect.currentframe().f_lineno + 1
        cm.calibrate(pairs, alphas=[0.1], progress=False)
    hits = [x for x in w if 'calibration images are needed' in str(x.message)]
    assert hits and hits[0].filename == __file__ and hits[0].lineno == line, [(x.filename, x.lineno) for x in w]


def _terminating_levels(bound:float, rng, k:int)->list:
    "k pairs (alpha as a typed decimal string, n) with alpha = B/(n+1) exactly, n+1 = 2^a 5^b so that the decimal terminates."
    out = []
    while len(out) < k:
        m = int(2 ** rng.integers(0, 7) * 5 ** rng.integers(0, 4))
        if m < 2 or m > 2000: continue
        q = Fraction(bound).limit_denominator(1000) / m
        digits = 0
        while (q * 10 ** digits).denominator != 1: digits += 1
        out.append((f"{float(q):.{max(digits, 1)}f}", m - 1))
    return out

@pytest.mark.parametrize('bound', [3.0, 1.0])
def test_alpha_is_the_decimal_the_user_wrote(bound):
    "At alpha = B/(n+1) typed as a decimal, n images are exactly enough: the limit is +inf with zero losses, and -inf with n - 1."
    from conformal_superres.calibration import min_calibration_size
    rng = np.random.default_rng(SEED)
    for text, n in _terminating_levels(bound, rng, 12) + [('0.075', 39), ('0.12', 24)] * (bound == 3.0):
        alpha = float(text)
        assert min_calibration_size(alpha, bound) == n, (text, n, SEED)
        zero = [np.zeros((2, 3))] * n
        assert calibrate_threshold(zero, zero, alpha, bound) == math.inf, (text, n, SEED)
        cal = Calibrator(bound)
        for s in zero: cal.add(s, s)
        assert cal.limits(alpha) == math.inf, (text, n, SEED)
        if n > 1:
            with warnings.catch_warnings(record=True):
                warnings.simplefilter('always')
                assert calibrate_threshold(zero[1:], zero[1:], alpha, bound) == -math.inf, (text, n, SEED)
        assert brute_force_threshold(zero, zero, alpha, bound, limit=True) == math.inf
