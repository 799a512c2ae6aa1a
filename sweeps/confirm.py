"""The confirmation phase: the search's top configurations trained again on fresh seeds.

A search trial is one training run, and the seed alone moves a configuration's scores by
about a fifth of their range between configurations (docs/results-cpu.md). The search's best
score is the largest of several noisy draws, so it is biased upward. After the search, the
top ``confirm_top`` configurations (by the sweep's ranking rule) are therefore trained again
on ``confirm_seeds`` fresh seeds each (seeds the search never used), as the trials of a
second Tune experiment (``confirm/`` in the sweep folder) and MLflow child runs tagged with
the search trial they confirm (``gensweep.confirms``).

What is reported for a confirmed configuration is the mean over its fresh seeds, with their
spread. The search trial's own score is shown beside it and never enters that estimate.

The winner is the configuration with the best confirmed mean objective. It is declared only
when its lead over every other confirmed configuration exceeds the noise, under a pooled-
variance t-test, two-sided at 95% (the leader was picked before the test) and
Bonferroni-corrected over its comparisons: the seeds' variance is pooled over every confirmed configuration (seed noise
is a property of the recipe, about the same for neighbouring configurations), which gives
k(s - 1) degrees of freedom where one configuration's own s seeds give s - 1. With two
seeds per configuration that is still few, and the critical t is large: a lead must be
clear to count. With one seed per configuration there is no estimate of the noise at all,
so two configurations are reported as tied. The same test, on each measure, decides whether
another confirmed configuration beats the winner on utility (CAS), coverage or FID.
"""
from __future__ import annotations

import math
from pathlib import Path

from scorers.keys import IS_SPLITS, cas_key, memo_key, score_key

CONFIRMS = "confirms"  # the config key naming the search trial a confirmation trial repeats
SEED_OFFSET = 1000  # fresh seeds: the sweep's seed + 1000, + 1001, ... (the search uses +0)
CONFIDENCE = 0.95


def headline(ns) -> dict:
    """Every headline measure at the largest sample count: key -> (name, higher is better)."""
    n = max(ns)
    return {score_key("inception", n, "mean"): ("IS", True),
            score_key("vit", n, "mean"): ("TS", True),
            score_key("inception", n, "fid"): ("FID (Inception feat.)", False),
            score_key("inception", n, "kid_mean"): ("KID (Inception feat.)", False),
            score_key("vit", n, "precision"): ("precision (ViT)", True),
            score_key("vit", n, "recall"): ("recall (ViT)", True),
            score_key("vit", n, "density"): ("density (ViT)", True),
            score_key("vit", n, "knn_coverage"): ("coverage (ViT)", True),
            cas_key(n): ("CAS", True),
            memo_key("pixels", n, "near_copies"): ("near copies (pixels)", False),
            memo_key("pixels", n, "copying"): ("copying C_T (pixels; 0 is ideal)", True)}


def sample_spread(key: str, row: dict) -> float | None:
    """Half the 95% spread that comes from the finite sample set, for one trial: for IS/TS
    1.96 x the standard error of the mean over the splits (the split deviation, taken over
    the ``IS_SPLITS`` split values with ddof 0, over sqrt(splits - 1)), or half the
    bootstrap interval of FID, KID and coverage (``scorers.bootstrap``); None for a measure
    with neither."""
    if key.endswith("_mean") and key.startswith(("is_", "ts_")):
        std = row.get(key[:-len("_mean")] + "_std")
        return 1.959963984540054 * std / math.sqrt(IS_SPLITS - 1) if _finite(std) else None
    base = key[:-len("_mean")] if key.startswith("kid_") else key
    lo, hi = row.get(base + "_lo"), row.get(base + "_hi")
    return (hi - lo) / 2.0 if _finite(lo) and _finite(hi) else None


def dominance_measures(ns) -> tuple:
    """What the data is for: utility, coverage, and the distance to the real data."""
    n = max(ns)
    return (cas_key(n), score_key("vit", n, "knn_coverage"), score_key("inception", n, "fid"))


def fresh_seeds(base_seed: int, count: int) -> list[int]:
    return [base_seed + SEED_OFFSET + j for j in range(count)]


def confirmation_points(ranked: list[dict], hyper_keys, top: int, seeds: list[int]) -> list:
    """The confirmation trials' configs: each of the ``top`` ranked search trials' searched
    hyperparameters, once per fresh seed, tagged with the trial it confirms."""
    points = []
    for row in ranked[:top]:
        config = {k: row["_config"][k] for k in hyper_keys if k in row["_config"]}
        points += [{**config, "seed": seed, CONFIRMS: row["trial_id"]} for seed in seeds]
    return points


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarise(confirm_rows: list[dict], search_rows: list[dict], ns) -> list[dict]:
    """One entry per confirmed configuration: the search trial it repeats, its
    hyperparameters, and for every headline measure the fresh seeds' values, their mean and
    standard deviation, beside the search trial's own value; and the spread of one seed's
    finite sample set (``sample``: the mean over seeds of ``sample_spread``)."""
    by_id = {r["trial_id"]: r for r in search_rows}
    out = {}
    for row in confirm_rows:
        of = row["_config"].get(CONFIRMS)
        entry = out.setdefault(of, {"confirms": of, "search": by_id.get(of, {}),
                                    "seeds": [], "values": {}, "statuses": []})
        entry["seeds"].append(row["_config"].get("seed"))
        entry["statuses"].append(row["status"])
        for key in headline(ns):
            if row["status"] == "finished" and _finite(row.get(key)):
                entry["values"].setdefault(key, []).append(float(row[key]))
                half = sample_spread(key, row)
                if half is not None:
                    entry.setdefault("halves", {}).setdefault(key, []).append(half)
    for entry in out.values():
        entry["mean"] = {k: sum(v) / len(v) for k, v in entry["values"].items()}
        entry["sd"] = {k: _sd(v) for k, v in entry["values"].items()}
        entry["sample"] = {k: sum(v) / len(v) for k, v in entry.pop("halves", {}).items()}
    return list(out.values())


def _sd(values: list[float]) -> float:
    """The sample standard deviation (n - 1), NaN for fewer than two values."""
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((x - m) ** 2 for x in values) / (len(values) - 1))


def pooled_sd(entries: list[dict], key: str) -> tuple[float, int]:
    """(the seeds' standard deviation pooled over the configurations, its degrees of
    freedom) for measure ``key``."""
    ss, df = 0.0, 0
    for e in entries:
        v = e["values"].get(key, [])
        if len(v) > 1:
            m = sum(v) / len(v)
            ss += sum((x - m) ** 2 for x in v)
            df += len(v) - 1
    return (math.sqrt(ss / df) if df else float("nan")), df


def beats(a: dict, b: dict, key: str, higher: bool, entries: list[dict],
          comparisons: int = 1) -> tuple[bool, float]:
    """Whether ``a`` beats ``b`` on ``key`` beyond the seed noise, and the margin the noise
    allows: a pooled t-test, two-sided at ``CONFIDENCE`` (``a`` was picked as the better one
    before the test, which a one-sided test would not account for), Bonferroni-corrected
    over ``comparisons`` such tests."""
    from scipy import stats  # about 0.4 s to import: not on the CLI's --help path

    va, vb = a["values"].get(key, []), b["values"].get(key, [])
    sd, df = pooled_sd(entries, key)
    if not va or not vb or not df:
        return False, float("nan")
    alpha = (1 - CONFIDENCE) / (2 * max(comparisons, 1))
    noise = stats.t.ppf(1 - alpha, df) * sd * math.sqrt(1 / len(va) + 1 / len(vb))
    lead = (a["mean"][key] - b["mean"][key]) * (1 if higher else -1)
    return lead > noise, noise


def verdict(entries: list[dict], objectives: list[str], ns) -> dict:
    """The confirmed ranking on the objective (headline keys, higher is better), the winner
    or a named tie with the reason, and any dominance warning in plain words. An objective
    of several scores confirms a front, not a ranking: no single winner is declared."""
    objective = objectives[0]
    scored = sorted((e for e in entries if objective in e["mean"]),
                    key=lambda e: -e["mean"][objective])
    names = headline(ns)
    if not scored:
        return {"ranking": [], "winner": None, "tied": [],
                "reason": "no confirmation trial finished with scores", "warnings": []}
    ids = [e["confirms"] for e in scored]
    if len(objectives) > 1:
        return {"ranking": ids, "winner": None, "tied": ids, "warnings": [],
                "reason": f"the objective has several scores ({', '.join(objectives)}): the "
                          f"confirmed configurations form a front, ranked here by the first; "
                          f"compare their means in the table"}
    best = scored[0]
    if len(scored) == 1:
        return {"ranking": ids, "winner": best["confirms"], "tied": [], "warnings": [],
                "reason": "the only configuration confirmed with scores"}
    k = len(scored) - 1  # the winner is tested against every other configuration
    tests = {e["confirms"]: beats(best, e, objective, True, scored, k) for e in scored[1:]}
    tied = [e for e in scored[1:] if not tests[e["confirms"]][0]]
    if tied:
        closest = tied[0]
        noise = tests[closest["confirms"]][1]
        lead = best["mean"][objective] - closest["mean"][objective]
        why = (f"the lead of {lead:.3f} over {closest['confirms']} is within the seed noise "
               f"({noise:.3f}: a two-sided pooled t at {CONFIDENCE:.0%} over {k} "
               f"comparison{'s' * (k > 1)})" if math.isfinite(noise) else
               "one fresh seed per configuration gives no estimate of the seed noise")
        return {"ranking": ids, "winner": None, "warnings": [],
                "tied": [best["confirms"], *(e["confirms"] for e in tied)],
                "reason": f"tied: {why}"}
    lead = best["mean"][objective] - scored[1]["mean"][objective]
    noise = tests[scored[1]["confirms"]][1]
    reason = (f"its lead of {lead:.3f} over the runner-up exceeds the seed noise ({noise:.3f}: "
              f"a two-sided pooled t at {CONFIDENCE:.0%} over {k} comparison{'s' * (k > 1)})")
    warnings = []
    for other in scored[1:]:
        for key in dominance_measures(ns):
            if beats(other, best, key, names[key][1], scored, k)[0]:
                warnings.append(
                    f"{other['confirms']} beats the winner {best['confirms']} on "
                    f"{names[key][0]} beyond the seed noise ({other['mean'][key]:.4g} against "
                    f"{best['mean'][key]:.4g}): the winner is not best at everything the "
                    f"data is for.")
    return {"ranking": ids, "winner": best["confirms"], "tied": [], "reason": reason,
            "warnings": warnings}


def table(entries: list[dict], decision: dict, objective: str, ns) -> str:
    """The console's table of confirmed configurations: mean +- SD over fresh seeds on the
    objective and the headline measures, the search trial's own value beside."""
    names = headline(ns)
    keys = [objective] + [k for k in names if k != objective]
    order = {c: i for i, c in enumerate(decision["ranking"])}
    rows = sorted(entries, key=lambda e: order.get(e["confirms"], len(order)))
    lines = [f"confirmed on fresh seeds (mean +- SD over {max(len(e['seeds']) for e in entries)}"
             f" seeds; ~ the 95% spread of one seed's sample set; the search trial's own "
             f"value in brackets):"]
    for e in rows:
        cells = []
        for k in keys:
            if k not in e["mean"]:
                continue
            sd = e["sd"].get(k, float("nan"))
            spread = f" +- {sd:.3g}" if math.isfinite(sd) else ""
            if k in e.get("sample", {}):
                spread += f" ~{e['sample'][k]:.2g}"
            own = e["search"].get(k)
            cells.append(f"{names.get(k, (k,))[0]} {e['mean'][k]:.4g}{spread}"
                         + (f" [{own:.4g}]" if _finite(own) else ""))
        lines.append(f"  {str(e['confirms'])[-8:]}: " + ", ".join(cells))
    head = (f"winner: {decision['winner']} ({decision['reason']})" if decision["winner"]
            else f"no winner declared: {', '.join(decision['tied'])} are {decision['reason']}")
    lines.append(head)
    lines += [f"warning: {w}" for w in decision["warnings"]]
    return "\n".join(lines)


def write_confirmed(sweep_dir: Path, entries: list[dict], ns) -> Path:
    """``confirmed.csv``: one row per confirmed configuration, every headline measure's
    mean, SD and seed count, the half-width of one seed's sample-set spread, and the search
    trial's own value."""
    import csv

    path = Path(sweep_dir) / "confirmed.csv"
    keys = list(headline(ns))
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["confirms", "seeds", "statuses"] + [
            f"{k}_{s}" for k in keys for s in ("mean", "sd", "n", "sample_halfwidth", "search")])
        for e in entries:
            writer.writerow([e["confirms"], " ".join(map(str, e["seeds"])),
                             " ".join(e["statuses"])]
                            + [v for k in keys for v in (e["mean"].get(k), e["sd"].get(k),
                                                        len(e["values"].get(k, [])),
                                                        e.get("sample", {}).get(k),
                                                        e["search"].get(k))])
    return path


def best_config_block(confirmation: dict | None, best: dict) -> dict | None:
    """What best_config.json says of the confirmation: the verdict, and the chosen
    configuration's confirmed means and spreads beside its search score."""
    if confirmation is None:
        return None
    decision = confirmation["decision"]
    mine = next((e for e in confirmation["entries"] if e["confirms"] == best["trial_id"]), None)
    def finite(values: dict) -> dict:  # strict JSON has no NaN: an SD of one seed is null
        return {k: (v if math.isfinite(v) else None) for k, v in values.items()}

    return {"winner": decision["winner"], "tied": decision["tied"], "reason": decision["reason"],
            "warnings": decision["warnings"],
            "seeds": mine["seeds"] if mine else [],
            "mean": finite(mine["mean"]) if mine else {}, "sd": finite(mine["sd"]) if mine else {},
            "search_scores_note": "the search trial's scores (under 'scores') are the largest "
                                  "of several noisy draws; the confirmed means are not"}
