"""The sample-set spread (``scorers.bootstrap``): the shipped intervals, computed from the
matrices the scores already hold, equal a bootstrap done by definition (redraw the sample
rows, score them again from scratch); and they behave like a spread should."""
import numpy as np
import oracles
import pytest

from scorers import bootstrap
from scorers.classifier_scores import score_predictions
from scorers.keys import score_key
from scorers.reference import DC_K, reference_stats, two_sample_to_reference


def _sets(n=120, m=120, d=6, shift=0.4, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(shift, 1.1, size=(m, d))


def _drawn(fake, counts):
    return np.repeat(fake, counts.astype(int), axis=0)


def test_kid_and_coverage_intervals_equal_the_bootstrap_by_definition():
    real, fake = _sets()
    counts = bootstrap.resample_counts(len(fake), replicates=30, seed=5)
    got = two_sample_to_reference(reference_stats(real), fake, counts)
    d = real.shape[1]

    def full_mmd(y):  # KID's kernel over all rows: unbiased MMD^2, positions p != q
        kernel = lambda a, b: oracles._poly_kernel(a, b, 1.0 / d, 1.0, 3)
        return oracles.mmd2_unbiased(kernel(real, real), kernel(y, y), kernel(real, y))

    mmds = [full_mmd(_drawn(fake, w)) for w in counts]
    coverages = [oracles.prdc(real, _drawn(fake, w), DC_K)["coverage"] for w in counts]
    half_kid, half_cov = 1.959963984540054 * np.std(mmds, ddof=1), \
        1.959963984540054 * np.std(coverages, ddof=1)
    assert got["kid_lo"] == pytest.approx(got["kid_mean"] - half_kid, rel=1e-9, abs=1e-12)
    assert got["kid_hi"] == pytest.approx(got["kid_mean"] + half_kid, rel=1e-9, abs=1e-12)
    assert got["knn_coverage_lo"] == pytest.approx(got["knn_coverage"] - half_cov, abs=1e-12)
    assert got["knn_coverage_hi"] == pytest.approx(got["knn_coverage"] + half_cov, abs=1e-12)
    assert half_kid > 0 and half_cov > 0
    assert "kid_lo" not in two_sample_to_reference(reference_stats(real), fake)


def test_fid_interval_and_which_n_and_features_get_intervals():
    real, fake = _sets(n=200, m=200, d=8)
    wide_real, wide_fake = _sets(n=200, m=200, d=bootstrap.FID_MAX_DIM + 1)
    probs = np.full((200, 10), 0.1)
    refs = {n: reference_stats(real[:n]) for n in (100, 200)}
    got = score_predictions("vit", probs, fake, refs.__getitem__, (100, 200))
    counts = bootstrap.resample_counts(200)
    fids = [oracles.frechet_distance(real, _drawn(fake, w)) for w in counts]
    half = 1.959963984540054 * np.std(fids, ddof=1)
    fid = got[score_key("vit", 200, "fid")]
    assert got[score_key("vit", 200, "fid_lo")] == pytest.approx(fid - half, rel=1e-6)
    assert got[score_key("vit", 200, "fid_hi")] == pytest.approx(fid + half, rel=1e-6)
    for stat in ("kid_lo", "knn_coverage_hi"):
        assert score_key("vit", 200, stat) in got and score_key("vit", 100, stat) not in got
    wide = score_predictions("inception", probs, wide_fake, lambda n: reference_stats(wide_real),
                             (200,))
    assert score_key("inception", 200, "kid_lo") in wide
    assert score_key("inception", 200, "fid_lo") not in wide  # too wide to redo 100 times


def test_the_interval_narrows_as_the_sample_set_grows():
    real, fake = _sets(n=2000, m=2000, d=5, seed=9)
    widths = {}
    for n in (200, 2000):
        got = two_sample_to_reference(reference_stats(real[:n]), fake[:n],
                                      bootstrap.resample_counts(n))
        widths[n] = got["kid_hi"] - got["kid_lo"], got["knn_coverage_hi"] - got["knn_coverage_lo"]
    # a spread of the mean of n terms: ~1/sqrt(n), so 10x the samples ~ 3.2x narrower
    for stat in (0, 1):
        assert 2.0 < widths[200][stat] / widths[2000][stat] < 5.5, widths
