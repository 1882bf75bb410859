"""Statistical checks of conformal_superres.bounds, risk_check and kutiel: the closed forms, the risk checker, and the
Kutiel et al. counterexample. Fresh random inputs each run (the seed is printed on failure);
tolerances are Z = 4.5 standard errors (3.4e-6 per one-sided comparison, about 30 comparisons: under 1e-4 per
run for a correct implementation); each statistical test has a partner that shows it fails a wrong one."""
import math
import os
import warnings
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from conformal_superres.calibration import brute_force_threshold, calibrate_threshold, mask_loss
from conformal_superres.experiments.risk_check import RiskPool, check_risk, random_splits
from conformal_superres.bounds import crc_lower_bound, leakage_bound, leakage_corrected_alpha, psnr_lower_bound
from conformal_superres.experiments.kutiel import hallucination_images, kutiel_calibrate, kutiel_critical_value, kutiel_threshold, masked_divergence, two_type_counterexample
from conformal_superres.calibration import min_calibration_size

Z = 4.5  # tolerance in standard errors


@pytest.fixture
def seed():
    "The run's seed: CONFORMAL_SUPERRES_SEED if set, else fresh; printed so that a failure can be replayed."
    from conftest import SEED as s
    print(f"seed {s} (replay with CONFORMAL_SUPERRES_SEED={s})")
    return s


def pool(rng, N, shape=(8, 8), shift=0.0, bound=1.0):
    "Images whose error grows with sigma (with ties), plus `shift` on every error of the test distribution."
    sig = [np.round(rng.uniform(0, 1, shape), 2) for _ in range(N)]
    fid = [np.clip(s * rng.uniform(0.2, 1.0) + shift + rng.uniform(0, 0.3, shape), 0, bound) for s in sig]
    return sig, fid


# ---------------------------------------------------------------- closed forms
def test_min_calibration_size_is_the_calibration_boundary(seed):
    rng = np.random.default_rng(seed)
    alphas = [0.1, 0.3, 0.05, 0.25, 0.01, 0.07, 0.0048, 0.3 / 3] + [round(x, int(d)) for x, d in zip(rng.uniform(0.01, 1, 20), rng.integers(2, 5, 20))]
    for B in (1.0, 3.0):
        for a in alphas:
            n = min_calibration_size(a, B)
            closed = max(1, math.ceil(round(B / a, 9)) - 1)                  # the closed form, read to 9 decimals
            assert n == closed or (n == closed + 1 and Fraction(B) > Fraction(repr(a)) * n), (a, B, n, seed)  # +1 only where the decimal alpha demands it
            z = lambda m: ([rng.uniform(0, 1, (2, 3))] * m, [np.zeros((2, 3))] * m)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                assert calibrate_threshold(*z(n), a, B) > -np.inf, (a, B, n)
                if n > 1: assert calibrate_threshold(*z(n - 1), a, B) == -np.inf, (a, B, n)


def test_closed_forms():
    assert min_calibration_size(0.1, 3.0) == 29 and min_calibration_size(0.25, 3.0) == 11
    assert min_calibration_size(0.3, 3.0) == 9    # alpha as typed: 10 x 0.3 = 3 (the float64 0.3 alone would ask for 10)
    assert min_calibration_size(0.075, 3.0) == 39 and min_calibration_size(0.12, 3.0) == 24
    assert psnr_lower_bound(0.1) == pytest.approx(20.0, abs=1e-12)
    assert psnr_lower_bound(0.001) == pytest.approx(60.0, abs=1e-12)
    assert crc_lower_bound(0.2, 99, 1.0) == pytest.approx(0.18, abs=1e-15)
    with pytest.raises(ValueError, match='between 0 and n'): leakage_bound(0.1, 5, 6)
    with pytest.raises(ValueError, match='positive'): psnr_lower_bound(-1)


def test_leakage_bound_is_the_level_the_new_images_are_calibrated_at(seed):
    "Leaked images with zero loss (memorised): calibrating on all n at alpha gives the limits of calibrating on the"
    " n_new new images alone at leakage_bound(alpha, n, n_leaked); and at leakage_corrected_alpha, those of alpha."
    from conformal_superres.calibration import Calibrator
    rng = np.random.default_rng(seed)
    for it in range(40):
        n_new, k = int(rng.integers(3, 30)), int(rng.integers(1, 30))
        new = [(rng.random((3, 4)), rng.uniform(0, 1, (3, 4))) for _ in range(n_new)]
        leaked = [(rng.random((3, 4)), np.zeros((3, 4))) for _ in range(k)]
        def limits(pairs, a):
            c = Calibrator(1.0)
            for s_, d_ in pairs: c.add(s_, d_)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                return c.limits(a)
        n = n_new + k
        for a in rng.uniform(1 / (n + 1), 1 / (n_new + 1) * (n + 1) / (n + 1) + 0.5, 4):
            a = min(a, 1.0)
            lb = leakage_bound(a, n, k)
            if lb <= 1.0: assert limits(new + leaked, a) == limits(new, lb), (seed, it, a)
            ca = leakage_corrected_alpha(a, n, k)
            assert limits(new + leaked, ca) == limits(new, a), (seed, it, a)


def test_leakage_check_can_fail(seed):
    "A wrong bound, alpha (n+1)/(n+1 - n_leaked/2) (too small), breaks the identity above."
    from conformal_superres.calibration import Calibrator
    rng = np.random.default_rng(seed)
    wrong = 0
    for it in range(40):
        n_new, k = 10, 10
        new = [(rng.random((3, 4)), rng.uniform(0, 1, (3, 4))) for _ in range(n_new)]
        leaked = [(rng.random((3, 4)), np.zeros((3, 4))) for _ in range(k)]
        c_all, c_new = Calibrator(1.0), Calibrator(1.0)
        for s_, d_ in new + leaked: c_all.add(s_, d_)
        for s_, d_ in new: c_new.add(s_, d_)
        a = 0.3
        wrong += c_all.limits(a) != c_new.limits(a * 21 / (21 - k / 2))
    assert wrong > 0


# ---------------------------------------------------------------- the checker
def test_pool_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    sg = [np.round(rng.uniform(0, 1, rng.integers(1, 5, 2)), 1) for _ in range(16)]
    fd = [np.round(rng.uniform(0, 3, s.shape), 1) for s in sg]
    p = RiskPool(sg, fd, 3.0)
    al = np.array([0.1, 0.4, 1.0, 1.9, 2.7, 3.0])
    for c, te in random_splits(16, 7, 4, seed=seed):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ref = brute_force_threshold([sg[i] for i in c], [fd[i] for i in c], al, 3.0)
        got = p.thresholds(c, al)
        np.testing.assert_array_equal(got, ref, err_msg=f'seed {seed}')
        np.testing.assert_array_equal(p.losses(te, got), [[mask_loss(sg[j], fd[j], t) for t in got] for j in te])


def test_risk_under_alpha_when_exchangeable(seed):
    rng = np.random.default_rng(seed)
    sig, fid = pool(rng, 240)
    chk = check_risk(sig, fid, [0.15, 0.3, 0.5, 0.8], n_calib=60, n_splits=300, bound=1.0, seed=seed)
    assert (chk.mean <= chk.alphas + Z * chk.se).all(), (seed, chk)
    assert (chk.mean >= chk.alphas - 0.1).all(), (seed, chk)  # and not trivially: the mask uses most of alpha


def test_risk_above_alpha_when_shifted(seed):
    rng = np.random.default_rng(seed)
    sig, fid = pool(rng, 150)
    sig2, fid2 = pool(rng, 150, shift=0.25)
    chk = check_risk(sig, fid, [0.3, 0.5, 0.8], n_calib=60, n_splits=200, bound=1.0, seed=seed,
                     test_sigmas=sig2, test_fidelities=fid2)
    assert (chk.mean > chk.alphas + Z * chk.se).all(), (seed, chk)


# ---------------------------------------------------------------- Kutiel et al.
def test_two_type_counterexample():
    cx = two_type_counterexample(q=0.2, level=0.25, delta=0.1)
    assert cx.critical_values() == (math.inf, 0.2)
    n, k = 100, 10
    exact = 0.8 * stats.binom.sf(k - 1, n, 0.2) + 0.2 * stats.binom.cdf(k - 1, n, 0.2)
    assert cx.miscoverage(n) == pytest.approx(exact, rel=1e-12)
    assert cx.miscoverage(n) > 7 * cx.delta                      # 0.8 against 0.1
    assert cx.miscoverage(n, rule='first') <= cx.delta
    r = cx.crc_risk(n, alpha=cx.delta)
    assert r['risk'] <= cx.delta and r['miscoverage'] <= cx.delta


def test_two_type_counterexample_by_simulation(seed):
    cx = two_type_counterexample()
    rng, n = np.random.default_rng(seed), 60
    fails = []
    for _ in range(300):
        sg, er, _ = cx.sample(n + 1, rng)
        t = kutiel_calibrate(sg[:n], er[:n], cx.level, cx.delta)
        fails.append(masked_divergence(sg[n], er[n], t) > cx.level)
    p = cx.miscoverage(n)
    assert abs(np.mean(fails) - p) < Z * math.sqrt(p * (1 - p) / len(fails)) + 1e-9, (seed, np.mean(fails), p)
    assert np.mean(fails) > 5 * cx.delta
    q = cx.miscoverage(n, rule='first')   # the same check rejects a wrong value (the other rule's)
    assert abs(np.mean(fails) - q) >= Z * math.sqrt(q * (1 - q) / len(fails)) + 1e-9, (seed, np.mean(fails), q)


def test_kutiel_quantile_is_sound_for_the_max(seed):
    "With a monotone divergence (the max) the same procedure keeps P(fail) <= delta."
    rng = np.random.default_rng(seed)
    sig, fid = pool(rng, 400, shape=(6, 6))
    level, delta = 0.6, 0.2
    crit = np.array([kutiel_critical_value(s, f, level, 'max') for s, f in zip(sig, fid)])
    # the quantile's index, exactly: k = floor((n+1) delta), the k-th smallest critical value
    assert kutiel_threshold([5., 1, 3, 2, 4, 9, 8, 7, 6], 0.2) == 2.0       # k = floor(10*0.2) = 2
    assert kutiel_threshold([5., 1, 3, 2, 4, 9, 8, 7, 6, 10], 0.2) == 2.0   # k = floor(11*0.2) = 2
    assert kutiel_threshold([5., 1, 3, 2, 4, 9, 8, 7, 6, 10, 11], 0.25) == 3.0  # k = floor(12*0.25) = 3
    assert kutiel_threshold([5., 1, 3], 0.2) == -np.inf                      # k = 0: the empty mask
    fails = []
    for c, te in random_splits(400, 50, 200, seed=seed):
        t = kutiel_threshold(crit[c], delta)
        assert t == np.sort(crit[c])[math.floor(51 * delta) - 1], seed     # k = 10 of n = 50
        fails.append(np.mean([masked_divergence(sig[j], fid[j], t, 'max') > level for j in te]))
    se = np.std(fails, ddof=1) / math.sqrt(len(fails))
    assert np.mean(fails) <= delta + Z * se, (seed, np.mean(fails))


def test_hallucination_images_break_kutiel_not_crc(seed):
    level, delta, n = 0.15, 0.1, 150
    # Kutiel's rule promises that at most delta of the test images exceed the level. Each repetition draws a
    # fresh calibration set and fresh test images, so the repetitions are independent and their standard error
    # is honest (splits of one pool are not: the pool's own luck moves every split together).
    fails = []
    for s in np.random.SeedSequence(seed).spawn(60):
        sig_, err_, _, _ = hallucination_images(n + 200, seed=int(s.generate_state(1)[0]))
        crit = np.array([kutiel_critical_value(a, e, level) for a, e in zip(sig_[:n], err_[:n])])
        t = kutiel_threshold(crit, delta)
        fails.append(np.mean([masked_divergence(sig_[j], err_[j], t) > level for j in range(n, n + 200)]))
    se = np.std(fails, ddof=1) / math.sqrt(len(fails))
    assert np.mean(fails) > delta + Z * se, (seed, np.mean(fails), se)
    sig, err, blob, hard = hallucination_images(600, seed=seed)
    chk = check_risk(sig, err, [0.05, 0.1, 0.3], n_calib=n, n_splits=200, bound=1.0, seed=seed)
    assert (chk.mean <= chk.alphas + Z * chk.se).all(), (seed, chk)
