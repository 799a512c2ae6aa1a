"""Scores against a precomputed reference (``scorers.reference``) equal their definitions."""
import numpy as np
import oracles
import pytest

import scorers.arrays as arrays
import scorers.reference as reference
from scorers.fid import frechet_distance_to_reference
from scorers.reference import kid_subsets, reference_stats, two_sample_to_reference
from scorers.two_sample import median_pairwise_distance


@pytest.mark.parametrize("n_real, n_fake, dim, singular", [
    (400, 300, 16, False),   # more rows than features: the Cholesky-factor path
    (30, 20, 64, False),     # fewer rows than features: the Gram (singular values) path
    (40, 300, 16, False),    # real side short: Gram path although the fake side is not
    (400, 300, 16, True),    # rank-deficient real covariance: falls back to the definition
])
def test_fid_against_precomputed_reference_equals_the_definition(n_real, n_fake, dim, singular):
    rng = np.random.default_rng(7)
    real = rng.normal(size=(n_real, dim)) @ rng.normal(size=(dim, dim))
    if singular:
        real[:, -1] = real[:, 0]  # a repeated feature: the covariance has rank dim - 1
    fake = rng.normal(0.3, 1.2, size=(n_fake, dim)) @ rng.normal(size=(dim, dim))
    ref = reference_stats(real)
    assert (ref.factor is None) == (singular or n_real <= dim)
    for sample in (fake, real[: min(n_fake, n_real)]):
        want = oracles.frechet_distance(real, sample)
        # sqrtm (the oracle) loses digits on rank-deficient products: 1e-6, as in test_metrics
        assert frechet_distance_to_reference(ref, sample) == pytest.approx(want, rel=1e-6, abs=1e-7)
    with pytest.raises(ValueError, match="features of the same scorer"):
        frechet_distance_to_reference(ref, fake[:, :-1])


def _by_the_definitions(real, fake):
    nn1 = oracles.nn1_accuracy(real, fake)
    kid = oracles.kernel_inception_distance(
        real, fake, subsets=kid_subsets(len(fake)), subset_size=reference.KID_SUBSET_SIZE, seed=0)
    pr, dc = oracles.prdc(real, fake, reference.PR_K), oracles.prdc(real, fake, reference.DC_K)
    return {"kid_mean": kid[0], "kid_std": kid[1],
            "mmd": oracles.kernel_mmd(real, fake, sigma=median_pairwise_distance(real)),
            "nn1_acc": nn1["accuracy"], "nn1_real": nn1["real_accuracy"],
            "nn1_fake": nn1["fake_accuracy"], "precision": pr["precision"],
            "recall": pr["recall"], "density": dc["density"], "knn_coverage": dc["coverage"]}


def _assert_same(got, want, exact_nn1):
    assert set(got) == set(want)
    for key in ("precision", "recall", "density", "knn_coverage"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    for key in ("kid_mean", "kid_std", "mmd"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    for key in ("nn1_acc", "nn1_real", "nn1_fake"):
        assert got[key] == (want[key] if exact_nn1 else pytest.approx(want[key], abs=0.02)), key


@pytest.mark.parametrize("n, m, size, block", [
    (60, 60, 1000, 1 << 22),  # n <= subset size: one round over all rows
    (60, 60, 25, 1 << 22),    # random rounds of 25, real terms cached
    (60, 60, 25, 90),         # the same in row blocks of 1-2 rows
])
def test_two_sample_against_reference_equals_the_definitions(monkeypatch, n, m, size, block):
    monkeypatch.setattr(reference, "KID_SUBSET_SIZE", size)
    monkeypatch.setattr(reference, "KID_SUBSETS", 7)
    monkeypatch.setattr(arrays, "BLOCK_ELEMS", block)
    rng = np.random.default_rng(n + m + size)
    real = rng.normal(size=(n, 12))
    ref = reference_stats(real)
    assert ref.mmd_sigma == median_pairwise_distance(real)
    for fake in (rng.normal(0.4, 1.3, size=(m, 12)), real[:m] + 1e-3 * rng.normal(size=(m, 12))):
        _assert_same(two_sample_to_reference(ref, fake), _by_the_definitions(real, fake), True)
    assert two_sample_to_reference(ref, real[:m])["nn1_fake"] == 0.0  # copies are caught


def test_two_sample_ties_and_duplicates_match_the_definitions(monkeypatch):
    # small integer coordinates: all distances are exact, with many ties and duplicates
    monkeypatch.setattr(reference, "KID_SUBSET_SIZE", 10)
    rng = np.random.default_rng(21)
    real, fake = rng.integers(0, 3, size=(23, 2)) * 1.0, rng.integers(0, 3, size=(23, 2)) * 1.0
    got = two_sample_to_reference(reference_stats(real), fake)
    _assert_same(got, _by_the_definitions(real, fake), exact_nn1=True)


def test_two_sample_refuses_other_sizes_and_more_than_it_holds(monkeypatch):
    rng = np.random.default_rng(5)
    real = rng.normal(size=(50, 8))
    ref = reference_stats(real)
    with pytest.raises(ValueError, match="45 sample features against a reference of 50"):
        two_sample_to_reference(ref, real[:45])
    monkeypatch.setattr(reference, "MAX_GRAM_ELEMS", 100)
    with pytest.raises(ValueError, match="more than the scores against a reference take"):
        two_sample_to_reference(ref, real + 1)


def test_two_sample_scores_move_the_right_way():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(300, 6))
    ref = reference_stats(real)
    same = two_sample_to_reference(ref, rng.normal(size=(300, 6)))
    far = two_sample_to_reference(ref, rng.normal(1.5, 1.0, size=(300, 6)))
    assert abs(same["kid_mean"]) < 0.05 and abs(same["mmd"]) < 0.02
    assert far["kid_mean"] > 10 * abs(same["kid_mean"]) and far["mmd"] > 0.2
    assert 0.35 < same["nn1_acc"] < 0.65 and far["nn1_acc"] > 0.85
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["knn_coverage"] > 0.8
    assert far["precision"] < 0.5 and far["knn_coverage"] < 0.5
    copies = two_sample_to_reference(ref, real)  # every sample sits on a real point
    assert copies["precision"] == 1.0 and copies["knn_coverage"] == 1.0


def test_reference_of_duplicates_and_mismatched_samples_are_refused():
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        reference_stats(np.ones((20, 3)))
    ref = reference_stats(np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(ValueError, match="features of the same scorer"):
        two_sample_to_reference(ref, np.zeros((20, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        two_sample_to_reference(ref, np.full((20, 3), np.nan))
