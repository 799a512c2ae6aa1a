"""Score maths checked against hand-worked values and brute-force reference loops: the
shipped IS, class coverage and general FID, and the definitional KID / MMD / 1-NN of
``tests/oracles.py`` that the shipped scores against a reference are checked against."""
import logging
import math
import warnings

import numpy as np
import oracles as two_sample
import pytest
from oracles import kernel_inception_distance, kernel_mmd, nn1_accuracy
from scipy import linalg
from scipy.spatial.distance import pdist

import scorers.arrays as arrays
import scorers.fid as fid
from scorers.fid import frechet_distance_general as frechet_distance
from scorers.metrics import class_coverage, inception_score


# ---------------------------------------------------------------- Inception Score
def test_is_uniform_predictions_is_one():
    mean, std = inception_score(np.full((50, 10), 0.1), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_is_confident_balanced_one_hot_is_n_classes():
    # in file order every chunk holds each of the 10 classes twice: KL = ln 10 per sample
    probs = np.eye(10)[np.tile(np.arange(10), 6)]
    mean, std = inception_score(probs, splits=3, shuffle_seed=None)
    assert mean == pytest.approx(10.0, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_is_two_class_hand_worked():
    # p(y) = [0.5, 0.5]. Row 1: KL = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) = 0.9 ln 1.8 + 0.1 ln 0.2
    #   = 0.9 * 0.5877866649 + 0.1 * (-1.6094379124) = 0.5290079984 - 0.1609437912 = 0.3680642072;
    # row 2 is the mirror image, so IS = exp(0.3680642072) = 1.8**0.9 * 0.2**0.1 = 1.4449348112.
    mean, std = inception_score(np.array([[0.9, 0.1], [0.1, 0.9]]), splits=1)
    assert mean == pytest.approx(1.4449348112, abs=1e-9)
    assert std == 0.0


def test_is_splits_in_file_order_by_hand():
    # shuffle_seed=None: the TF reference's splits, in file order.
    # chunk 1 = {class 0, class 1} -> IS 2; chunk 2 = {class 0, class 0} -> IS 1.
    # mean 1.5, population std sqrt(((2-1.5)^2 + (1-1.5)^2) / 2) = 0.5
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert inception_score(probs, 2, shuffle_seed=None) == pytest.approx((1.5, 0.5), abs=1e-12)
    # the same two classes twice each: sorted, each chunk holds one class -> IS 1, 1;
    # interleaved, each chunk holds both -> IS 2, 2.
    sorted_rows = np.eye(2)[[0, 0, 1, 1]]
    assert inception_score(sorted_rows, 2, shuffle_seed=None) == pytest.approx((1.0, 0.0))
    assert inception_score(sorted_rows[[0, 2, 1, 3]], 2, shuffle_seed=None) == pytest.approx(
        (2.0, 0.0))
    # pooled (splits=1): p(y) = [3/4, 1/4], KL = 3/4 ln(4/3) + 1/4 ln 4 -> (4/3)**0.75 * 4**0.25
    assert inception_score(probs, splits=1)[0] == pytest.approx((4 / 3) ** 0.75 * 4 ** 0.25)


def test_is_does_not_depend_on_the_order_of_the_rows():
    """A confident, balanced set sorted by class (as a balanced export writes it) scores as
    the same set shuffled, within one split std; in file order it would score 1."""
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 500)  # sorted by class, 5,000 rows
    probs = np.full((5000, 10), 0.002)
    probs[np.arange(5000), labels] = 0.982
    probs += rng.uniform(0, 0.004, size=probs.shape)
    probs /= probs.sum(1, keepdims=True)
    shuffled = probs[rng.permutation(5000)]
    sorted_mean, sorted_std = inception_score(probs)
    mixed_mean, mixed_std = inception_score(shuffled)
    assert sorted_mean > 7 and abs(sorted_mean - mixed_mean) <= max(sorted_std, mixed_std)
    assert inception_score(probs, shuffle_seed=None)[0] == pytest.approx(1.0, abs=0.01)
    assert inception_score(probs) == inception_score(probs)  # a fixed seed: deterministic


def test_is_array_split_uneven_chunks():
    # 5 rows, 2 splits -> np.array_split gives 3 + 2 rows
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    # chunk 1 p(y) = [1/3, 2/3]: mean KL = 1/3 ln 3 + 2/3 ln 1.5; chunk 2 is all class 0 -> 1
    first = 3 ** (1 / 3) * 1.5 ** (2 / 3)
    mean, std = inception_score(probs, splits=2, shuffle_seed=None)
    assert mean == pytest.approx((first + 1.0) / 2)
    assert std == pytest.approx(abs(first - 1.0) / 2)


def test_is_float32_matches_float64():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10)) * 3
    p64 = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p32 = p64.astype(np.float32)
    r32 = inception_score(p32, splits=4)
    r64 = inception_score(p32.astype(np.float64), splits=4)
    assert r32 == r64
    assert r32 == pytest.approx(inception_score(p64, splits=4), rel=1e-5)


# ---------------------------------------------------------------- FID
def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(1).normal(size=(400, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_1d_gaussians_matches_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(1.0, 2.0, size=(500, 1))
    b = rng.normal(-0.5, 0.7, size=(400, 1))
    m1, m2 = a.mean(), b.mean()
    s1, s2 = a.var(ddof=1), b.var(ddof=1)  # np.cov's convention
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * math.sqrt(s1 * s2)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-6)


def test_fid_shift_adds_squared_norm():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    d = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(a, a + d) == pytest.approx(d @ d, abs=1e-6)


def test_fid_singular_covariance_is_finite():
    # fewer samples than dimensions -> rank-deficient covariances
    x = np.random.default_rng(4).normal(size=(5, 10))
    assert abs(frechet_distance(x, x)) < 1e-3


def _fid_sqrtm_reference(a, b, offset=0.0):
    """The previous implementation: scipy.linalg.sqrtm of S_a S_b (pytorch-fid numerics)."""
    s1, s2 = (np.atleast_2d(np.cov(x, rowvar=False)) for x in (a, b))
    eye = np.eye(s1.shape[0]) * offset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Matrix is singular" when n < d
        covmean = linalg.sqrtm((s1 + eye) @ (s2 + eye))
    if offset == 0.0 and not np.isfinite(covmean).all():
        return _fid_sqrtm_reference(a, b, 1e-6)
    diff = a.mean(axis=0) - b.mean(axis=0)
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean.real)


def _correlated(rng, n, d=64, shift=0.0):
    # column scales over 3 decades: covariance eigenvalues spread over ~6+ decades
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * np.logspace(0, -3, d) + shift


# n above d, below d (Gram trick; rank-deficient stats), mixed, n == d (rank d - 1)
@pytest.mark.parametrize("n1, n2", [(300, 200), (40, 50), (30, 500), (64, 64)])
def test_fid_matches_sqrtm_reference(n1, n2):
    rng = np.random.default_rng(n1 + n2)
    a, b = _correlated(rng, n1), _correlated(rng, n2, shift=0.3)[:, ::-1]  # large where a is small
    ref = _fid_sqrtm_reference(a, b)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_fid_eps_offset_fallback(monkeypatch, caplog):
    rng = np.random.default_rng(15)
    a, b = _correlated(rng, 200, d=8), _correlated(rng, 150, d=8, shift=0.2)
    real, calls = fid._tr_sqrt_product, []

    def fails_once(s1, s2):
        calls.append(1)
        return np.nan if len(calls) == 1 else real(s1, s2)

    monkeypatch.setattr(fid, "_tr_sqrt_product", fails_once)
    with caplog.at_level(logging.WARNING, logger="scorers.fid"):
        got = frechet_distance(a, b)
    assert len(calls) == 2 and "adding 1e-06 to the diagonals" in caplog.text
    assert got == pytest.approx(_fid_sqrtm_reference(a, b, offset=1e-6), rel=1e-9)
    assert got != pytest.approx(_fid_sqrtm_reference(a, b), rel=1e-9)


def test_fid_gram_failure_falls_back_to_stats(monkeypatch):
    rng = np.random.default_rng(16)
    a, b = _correlated(rng, 20, d=32), _correlated(rng, 25, d=32, shift=0.1)

    def boom(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", boom)
    assert frechet_distance(a, b) == pytest.approx(_fid_sqrtm_reference(a, b), rel=1e-6)


def test_fid_refuses_covariances_that_are_not_psd():
    mu, s = np.zeros(3), np.eye(3)
    for s1, s2 in ((s, -s), (-s, s), (np.diag([1.0, 1.0, -0.5]), s)):
        with pytest.raises(ValueError, match="positive semi-definite"):
            fid._fid_from_stats(mu, s1, mu, s2)
    with pytest.raises(ValueError, match="too few samples"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))


# ---------------------------------------------------------------- KID
def _brute_unbiased_mmd2(x, y, k):
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_matches_brute_force_full_subset():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(6, 3))

    def poly(u, v):
        return (u @ v / 3 + 1.0) ** 3

    # subset_size >= N: each subset is a permutation of the whole set, so std is 0
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=50)
    assert mean == pytest.approx(_brute_unbiased_mmd2(x, y, poly), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_follow_seeded_default_rng():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(9, 2)), rng.normal(0.5, 1.0, size=(7, 2))

    def poly(u, v):
        return (0.3 * (u @ v) + 2.0) ** 2

    draw = np.random.default_rng(11)
    vals = []
    for _ in range(4):
        ix = draw.choice(9, 5, replace=False)
        iy = draw.choice(7, 5, replace=False)
        vals.append(_brute_unbiased_mmd2(x[ix], y[iy], poly))
    got = kernel_inception_distance(x, y, subsets=4, subset_size=5, degree=2, gamma=0.3,
                                    coef0=2.0, seed=11)
    assert got == pytest.approx((np.mean(vals), np.std(vals)), rel=1e-10)


def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=500)
    shifted, _ = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=500)
    assert abs(same) < 5e-3
    assert shifted > 0.5


def _kid_reference(a, b, subsets, size, degree=3, gamma=None, coef0=1.0, seed=0):
    """The previous implementation: kernel matrices recomputed for every subset."""
    size = min(size, len(a), len(b))
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        kxx, kyy, kxy = ((gamma * (u @ v.T) + coef0) ** degree for u, v in ((x, x), (y, y), (x, y)))
        off = size * (size - 1)
        vals.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                    - 2.0 * kxy.mean())
    return np.mean(vals), np.std(vals)


@pytest.mark.parametrize("n, m, size, gram", [(80, 60, 25, True), (80, 60, 25, False),
                                              (40, 90, 40, True), (30, 30, 50, False)])
def test_kid_matches_per_subset_reference(monkeypatch, n, m, size, gram):
    monkeypatch.setattr(two_sample, "kid_use_gram", lambda *args: gram)
    rng = np.random.default_rng(n + m + size)
    a, b = rng.normal(size=(n, 16)), rng.normal(0.2, 1.1, size=(m, 16))
    for kw in ({}, {"degree": 2, "gamma": 0.05, "coef0": 0.5}, {"degree": 1.5, "coef0": 2.0}):
        mean, std = kernel_inception_distance(a, b, subsets=12, subset_size=size, seed=3, **kw)
        ref_mean, ref_std = _kid_reference(a, b, 12, size, seed=3, **kw)
        assert mean == pytest.approx(ref_mean, rel=1e-9)
        assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-14)


def test_kid_full_kernel_matrices_only_when_cheaper():
    assert two_sample.kid_use_gram(5000, 5000, 1000, 100)
    assert not two_sample.kid_use_gram(5000, 5000, 1000, 1)
    assert not two_sample.kid_use_gram(10 ** 5, 10 ** 5, 10 ** 4, 100)  # too big to hold


# ---------------------------------------------------------------- kernel MMD
def test_mmd_matches_brute_force_with_fixed_sigma():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(5, 2)), rng.normal(0.7, 1.2, size=(4, 2))
    sigma = 1.3

    def gauss(u, v):
        return math.exp(-np.sum((u - v) ** 2) / (2 * sigma**2))

    assert kernel_mmd(x, y, sigma=sigma) == pytest.approx(_brute_unbiased_mmd2(x, y, gauss),
                                                          rel=1e-10)


def test_mmd_default_sigma_is_pooled_median_distance():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(30, 3)), rng.normal(1.0, 1.0, size=(20, 3))
    median = np.median(pdist(np.concatenate([x, y])))
    assert kernel_mmd(x, y) == pytest.approx(kernel_mmd(x, y, sigma=median), rel=1e-12)


def test_mmd_same_distribution_near_zero_shift_positive():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(800, 8)), rng.normal(size=(800, 8))
    assert abs(kernel_mmd(a, b)) < 5e-3
    assert kernel_mmd(a, b + 1.0) > 0.05


# ---------------------------------------------------------------- 1-NN two-sample test
def test_nn1_separated_clusters_are_perfectly_classified():
    rng = np.random.default_rng(12)
    real = rng.normal(size=(50, 4))
    fake = rng.normal(size=(40, 4)) + 100.0
    assert nn1_accuracy(real, fake) == {"accuracy": 1.0, "real_accuracy": 1.0,
                                        "fake_accuracy": 1.0}


def test_nn1_points_on_a_line_hand_worked():
    # real R: 0, 1, 10, 20   fake F: 2.5, 11, 11.7
    # R0=0    -> R1 (1.0)            correct      F2.5  -> R1 (1.5)         wrong
    # R1=1    -> R0 (1.0 < 1.5)      correct      F11   -> F11.7 (0.7 < 1)  correct
    # R10     -> F11 (1.0)           wrong        F11.7 -> F11 (0.7)        correct
    # R20     -> F11.7 (8.3 < 10)    wrong
    # real 2/4, fake 2/3, overall 4/7
    real = np.array([[0.0], [1.0], [10.0], [20.0]])
    fake = np.array([[2.5], [11.0], [11.7]])
    out = nn1_accuracy(real, fake)
    assert out["real_accuracy"] == pytest.approx(0.5)
    assert out["fake_accuracy"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("block", [1, 120, 280, 1 << 22])  # rows per block: 1, 3, 7, all
def test_nn1_matches_brute_force_with_exact_ties(monkeypatch, block):
    # small integer coordinates: all distances are exact, with many ties and duplicates
    rng = np.random.default_rng(14)
    real, fake = rng.integers(0, 3, size=(23, 2)) * 1.0, rng.integers(0, 3, size=(17, 2)) * 1.0
    z, is_real = np.concatenate([real, fake]), np.arange(40) < 23
    d = ((z[:, None] - z[None]) ** 2).sum(axis=-1)
    np.fill_diagonal(d, np.inf)
    correct = is_real[np.argmin(d, axis=1)] == is_real  # argmin: ties go to the lowest index
    monkeypatch.setattr(arrays, "BLOCK_ELEMS", block)
    assert nn1_accuracy(real, fake) == {"accuracy": correct.mean(),
                                        "real_accuracy": correct[is_real].mean(),
                                        "fake_accuracy": correct[~is_real].mean()}


# ---------------------------------------------------------------- class coverage
def test_class_coverage_hand_worked():
    probs = np.eye(4)[[0, 0, 1, 1]]
    out = class_coverage(probs)
    assert out["coverage"] == 0.5
    assert out["class_entropy"] == pytest.approx(math.log(2))
    assert out["class_entropy_max"] == pytest.approx(math.log(4))


def test_class_coverage_skewed_histogram_and_extra_classes():
    # predictions 0,0,0,1 -> freq (3/4, 1/4): H = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351446
    probs = np.array([[0.7, 0.3], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    out = class_coverage(probs, n_classes=5)
    assert out["coverage"] == pytest.approx(2 / 5)
    assert out["class_entropy"] == pytest.approx(0.5623351446, abs=1e-9)
    assert out["class_entropy_max"] == pytest.approx(math.log(5))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("probs, kwargs, msg", [
    (np.full(10, 0.1), {}, "2-D array"),
    (np.full((20, 2), np.nan), {}, "NaN or inf"),
    (np.array([[1.5, -0.5]] * 10), {"splits": 1}, "non-negative"),
    (np.ones((20, 3)), {}, "sum to 1"),
    (np.full((5, 2), 0.5), {"splits": 10}, "need N >= splits"),
    (np.zeros((0, 3)), {}, "empty"),
    (np.full((5, 2), 0.5), {"splits": 0}, "positive integer"),
])
def test_is_bad_input(probs, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        inception_score(probs, **kwargs)


def test_feature_metrics_bad_input():
    a = np.zeros((10, 3))
    for fn in (frechet_distance, kernel_inception_distance, kernel_mmd, nn1_accuracy):
        with pytest.raises(ValueError, match="feature dimensions differ.*D=3.*D=4"):
            fn(a, np.zeros((10, 4)))
        with pytest.raises(ValueError, match="must be a 2-D array"):
            fn(a, np.zeros(10))
        with pytest.raises(ValueError, match="NaN or inf"):
            fn(a, np.full((10, 3), np.inf))
        with pytest.raises(ValueError, match="too few samples"):
            fn(a, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="sigma must be a positive"):
        kernel_mmd(a, a + 1, sigma=0.0)
    with pytest.raises(ValueError, match="n_classes=2 is smaller"):
        class_coverage(np.eye(3), n_classes=2)


def test_blocked_distance_paths_match_unblocked(monkeypatch):
    rng = np.random.default_rng(13)
    real, fake = rng.normal(size=(37, 3)), rng.normal(0.3, 1.0, size=(29, 3))
    kid = (real, fake, 20, 10)  # 20 subsets of 10: from full kernel matrices
    whole = (kernel_mmd(real, fake), nn1_accuracy(real, fake), kernel_inception_distance(*kid))
    monkeypatch.setattr(arrays, "BLOCK_ELEMS", 50)  # forces row blocks of 1-2 rows
    assert kernel_mmd(real, fake) == pytest.approx(whole[0], rel=1e-12)
    assert nn1_accuracy(real, fake) == whole[1]
    assert kernel_inception_distance(*kid) == pytest.approx(whole[2], rel=1e-12)
