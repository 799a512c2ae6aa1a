"""The confirmation phase's arithmetic (sweeps/confirm.py) on constructed cases: the confirmed
estimate leaves the search trial's selected score out, a winner is declared only beyond the
pooled seed noise, one seed per configuration is always a tie, and a configuration that
beats the winner on what the data is for is named."""
import math

import pytest
from scipy import stats

from sweeps import confirm

NS = (1000, 5000)
TS, IS, CAS = "ts_5k_mean", "is_5k_mean", "cas_5k"
COVERAGE, FID = "knn_coverage_vit_5k", "fid_inception_5k"


def row(trial, confirms, seed, **scores):
    return {"trial_id": trial, "status": "finished",
            "_config": {"lr": 1e-3, "seed": seed, confirm.CONFIRMS: confirms}, **scores}


def search(trial, **scores):
    return {"trial_id": trial, "status": "finished", "_config": {"lr": 1e-3}, **scores}


def test_points_repeat_the_top_configurations_on_fresh_seeds():
    ranked = [{"trial_id": "a", "_config": {"lr": 0.1, "latent_dim": 8, "seed": 0,
                                            "model": "vae"}},
              {"trial_id": "b", "_config": {"lr": 0.2, "latent_dim": 16, "seed": 0}},
              {"trial_id": "c", "_config": {"lr": 0.3, "latent_dim": 32, "seed": 0}}]
    seeds = confirm.fresh_seeds(0, 2)
    points = confirm.confirmation_points(ranked, ("lr", "latent_dim"), 2, seeds)
    assert points == [{"lr": 0.1, "latent_dim": 8, "seed": 1000, "confirms": "a"},
                      {"lr": 0.1, "latent_dim": 8, "seed": 1001, "confirms": "a"},
                      {"lr": 0.2, "latent_dim": 16, "seed": 1000, "confirms": "b"},
                      {"lr": 0.2, "latent_dim": 16, "seed": 1001, "confirms": "b"}]
    assert 0 not in seeds  # never the search's own seed


def test_the_confirmed_estimate_leaves_the_selected_search_score_out():
    rows = [row("x1", "a", 1000, **{TS: 7.0}), row("x2", "a", 1001, **{TS: 7.4})]
    (entry,) = confirm.summarise(rows, [search("a", **{TS: 9.9})], NS)
    assert entry["mean"][TS] == pytest.approx(7.2) and entry["search"][TS] == 9.9
    assert entry["sd"][TS] == pytest.approx(stats.tstd([7.0, 7.4]))  # the oracle
    assert entry["seeds"] == [1000, 1001]


def test_a_lead_beyond_the_pooled_noise_wins_and_one_within_it_ties():
    search_rows = [search("a"), search("b")]
    clear = confirm.summarise([row("1", "a", 1000, **{TS: 8.0}), row("2", "a", 1001, **{TS: 8.1}),
                               row("3", "b", 1000, **{TS: 7.0}), row("4", "b", 1001, **{TS: 7.1})],
                              search_rows, NS)
    decision = confirm.verdict(clear, [TS], NS)
    assert decision["winner"] == "a" and "exceeds the seed noise" in decision["reason"]
    # the pooled SD is 0.0707 on 2 degrees of freedom: the noise is t(0.975, 2) * sd * 1
    sd, df = confirm.pooled_sd(clear, TS)
    assert df == 2 and sd == pytest.approx(math.sqrt(0.01 / 2))
    assert confirm.beats(clear[0], clear[1], TS, True, clear)[1] == pytest.approx(
        stats.t.ppf(0.975, 2) * sd)
    # an objective of several scores: a front, no single winner
    front = confirm.verdict(clear, [TS, IS], NS)
    assert front["winner"] is None and "form a front" in front["reason"]
    close = confirm.summarise([row("1", "a", 1000, **{TS: 8.0}), row("2", "a", 1001, **{TS: 7.5}),
                               row("3", "b", 1000, **{TS: 7.6}), row("4", "b", 1001, **{TS: 7.7})],
                              search_rows, NS)
    decision = confirm.verdict(close, [TS], NS)
    assert decision["winner"] is None and decision["tied"] == ["a", "b"]
    assert "within the seed noise" in decision["reason"]


def test_one_seed_per_configuration_is_a_tie_and_one_configuration_its_own_winner():
    one_seed = confirm.summarise([row("1", "a", 1000, **{TS: 9.0}),
                                  row("2", "b", 1000, **{TS: 1.0})], [], NS)
    decision = confirm.verdict(one_seed, [TS], NS)
    assert decision["winner"] is None and "no estimate of the seed noise" in decision["reason"]
    alone = confirm.summarise([row("1", "a", 1000, **{TS: 9.0})], [], NS)
    assert confirm.verdict(alone, [TS], NS)["winner"] == "a"


def test_a_configuration_better_on_utility_coverage_or_fid_is_named():
    """The TS winner trails the runner-up on CAS and FID beyond the noise: both are said."""
    scores = {"a": [(8.0, 0.80, 0.5, 900.0), (8.1, 0.81, 0.5, 910.0)],
              "b": [(7.0, 0.90, 0.5, 600.0), (7.1, 0.91, 0.5, 610.0)]}
    rows = [row(f"{c}{i}", c, 1000 + i, **{TS: ts, CAS: cas, COVERAGE: cov, FID: fid})
            for c, seeds in scores.items() for i, (ts, cas, cov, fid) in enumerate(seeds)]
    decision = confirm.verdict(confirm.summarise(rows, [], NS), [TS], NS)
    assert decision["winner"] == "a"
    said = " ".join(decision["warnings"])
    assert "b beats the winner a on CAS" in said and "on FID" in said
    assert "coverage" not in said  # equal coverage: nothing to say
    text = confirm.table(confirm.summarise(rows, [], NS), decision, TS, NS)
    assert "winner: a" in text and "warning: b beats the winner a on CAS" in text


def test_the_sample_set_spread_is_shown_beside_the_seed_spread(tmp_path):
    """Per configuration: 1.96 x the TS split deviation / 3 (the standard error of the
    mean of 10 splits), half the bootstrap interval of
    coverage and KID, averaged over the seeds; in the table and in confirmed.csv."""
    kid = "kid_inception_5k_mean"
    rows = [row("x1", "a", 1000, **{TS: 7.0, "ts_5k_std": 0.10, COVERAGE: 0.5,
                                    COVERAGE + "_lo": 0.46, COVERAGE + "_hi": 0.54,
                                    kid: 0.2, "kid_inception_5k_lo": 0.18,
                                    "kid_inception_5k_hi": 0.22}),
            row("x2", "a", 1001, **{TS: 7.4, "ts_5k_std": 0.20, COVERAGE: 0.6,
                                    COVERAGE + "_lo": 0.54, COVERAGE + "_hi": 0.66,
                                    kid: 0.3})]  # a trial without the interval
    (entry,) = confirm.summarise(rows, [search("a", **{TS: 9.9})], NS)
    assert entry["sample"][TS] == pytest.approx(1.959963984540054 * 0.15 / 3)
    assert entry["sample"][COVERAGE] == pytest.approx(0.05)
    assert entry["sample"][kid] == pytest.approx(0.02)
    decision = confirm.verdict([entry], [TS], NS)
    assert "TS 7.2 +- 0.283 ~0.098 [9.9]" in confirm.table([entry], decision, TS, NS)
    import csv
    with open(confirm.write_confirmed(tmp_path, [entry], NS)) as fh:
        (written,) = list(csv.DictReader(fh))
    assert float(written[f"{COVERAGE}_sample_halfwidth"]) == pytest.approx(0.05)
