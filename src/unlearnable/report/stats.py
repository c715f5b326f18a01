"""Statistics over seeds: each cell's mean and spread, the protection retained against clean data under the
same defence, and whether a difference is inside the spread. The report and the markdown tables share them.
"""
from __future__ import annotations

import pandas as pd

RECALLS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]
GROUP = ["dataset", "method", "apply", "surrogate", "victim", "defence"]
VISIBILITY = ["psnr", "ssim", "mean_shift_max"]  # of the published images against the clean ones
RETAINED_METRIC = "t2i_r1"  # the paper's; a grid whose clean victim sits near chance at R@1 reads R@10 instead


def metric_label(metric: str) -> str:
    """`t2i_r10` -> `t2i R@10`."""
    direction, k = metric.split("_r")
    return f"{direction} R@{k}"


def with_defence(summary: pd.DataFrame) -> pd.DataFrame:
    """Summaries written before the defence axis existed hold undefended cells."""
    return summary if "defence" in summary else summary.assign(defence="none")


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every grid cell."""
    summary = with_defence(summary)
    cols = RECALLS + ["rsum", "i2t_medr", "t2i_medr"] + [k for k in VISIBILITY if k in summary]
    g = summary.groupby(GROUP, sort=False)
    mean = g[cols].mean()
    std = g[cols].std(ddof=1).fillna(0.0).add_suffix("_std")
    chance = g[[f"chance_{c}" for c in RECALLS] + ["chance_rsum", "method_params"]].first()
    out = pd.concat([mean, std, chance, g.size().rename("seeds")], axis=1).reset_index()
    return out


def retained(clean: float, protected: float, chance: float) -> float:
    """The share of what a victim learns from clean data (above chance) that the protection takes away;
    undefined (NaN) where clean data teaches less than one point above chance."""
    return (clean - protected) / (clean - chance) if clean - chance >= 1.0 else float("nan")  # recall in %


def within_spread(clean: float, clean_sd: float, protected: float, protected_sd: float, seeds: int) -> bool:
    """No difference: the means differ by no more than the larger sd over seeds. One seed has no spread, so
    nothing is within it."""
    return seeds >= 2 and abs(clean - protected) <= max(clean_sd, protected_sd)


NO_DIFFERENCE = "≈ clean"
NO_DIFFERENCE_NOTE = (f"{NO_DIFFERENCE}: protected and clean differ by no more than the larger sd over seeds "
                      "(no difference).")


def effect_label(record: dict, retained: str = "{}") -> str:
    """What a protected cell of `defence_matrix` says against clean: no difference, or the share retained
    (formatted into `retained`)."""
    return NO_DIFFERENCE if record["within_spread"] else retained.format(percent(record["retained"]))


def defence_matrix(agg: pd.DataFrame, metric: str = RETAINED_METRIC) -> pd.DataFrame:
    """One row per protected cell (and clean), one column group per defence: mean, sd, seeds, the protection
    retained against the clean baseline of the same dataset, victim and defence, and whether the two differ
    by no more than their spread."""
    clean = agg[agg["method"] == "clean"].set_index(["dataset", "victim", "defence"])
    rows = []
    for r in agg.to_dict("records"):
        key = (r["dataset"], r["victim"], r["defence"])
        c = clean[metric].get(key, float("nan"))
        protected = r["method"] != "clean"
        same = protected and key in clean.index and within_spread(
            c, clean[f"{metric}_std"][key], r[metric], r[f"{metric}_std"], min(r["seeds"], clean["seeds"][key]))
        rows.append({**{k: r[k] for k in GROUP}, "mean": r[metric], "std": r[f"{metric}_std"], "seeds": r["seeds"],
                     "method_params": r["method_params"], "within_spread": same,
                     "retained": retained(c, r[metric], r[f"chance_{metric}"]) if protected else float("nan")})
    return pd.DataFrame(rows)


def defence_order(m: pd.DataFrame) -> list[str]:
    """Undefended first, then the defences by name."""
    names = set(m["defence"])
    return (["none"] if "none" in names else []) + sorted(names - {"none"})


def percent(x: float) -> str:
    return "–" if x != x else f"{100 * x:.0f}%"


def defence_grids(agg: pd.DataFrame, metric: str = RETAINED_METRIC):
    """Per dataset and victim: the defences (rows: undefended first), the protections (columns: clean first,
    as (method, apply, surrogate)) and each cell's record from `defence_matrix`, keyed (defence, protection)."""
    m = defence_matrix(agg, metric)
    defences = defence_order(m)
    for (dataset, victim), sub in m.groupby(["dataset", "victim"], sort=False):
        records = sub.to_dict("records")
        protections = sorted(dict.fromkeys((r["method"], r["apply"], r["surrogate"]) for r in records),
                             key=lambda p: p[0] != "clean")
        cells = {(r["defence"], (r["method"], r["apply"], r["surrogate"])): r for r in records}
        yield dataset, victim, defences, protections, cells


def method_label(method: str, method_params: str | dict | None = None) -> str:
    """A protection by its kind, with the grid's name beside it where the two differ (`robust_em · lowfreq8`):
    a reader knows the shipped kinds, not each grid's names for them. `method_params`: the summary's JSON, or a
    cell's dict."""
    import json

    params = method_params if isinstance(method_params, dict) else json.loads(method_params or "{}")
    kind = params.get("kind", method)
    return method if kind == method else f"{kind} · {method}"


def protection_label(method: str, apply: str, surrogate: str, method_params: str | dict | None = None) -> str:
    return method if method == "clean" else (method_label(method, method_params)
                                             + ("" if apply == "both" else f" [{apply} only]") + f" ({surrogate})")


def params_of(cells: dict, protection: tuple) -> str | None:
    """A protection's `method_params`, from any of its cells in a `defence_grids` panel."""
    return next((r["method_params"] for (_, p), r in cells.items() if p == protection), None)


VARIANT_KEYS = ("granularity", "eps", "noise_block", "colour_eps", "token_num", "common_words", "trigger_position",
                "rounds", "pgd_steps", "eot")


def variant_params(method_params: str) -> str:
    """A method's kind and the settings that make it a variant (only those it sets), for the variants table."""
    import json

    spec = json.loads(method_params or "{}")
    if not spec:
        return "–"
    eot = spec.get("eot")
    shown = {k: v for k, v in spec.items() if k in VARIANT_KEYS and k != "eot"}
    text = spec["kind"] + ("" if not shown else " " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return text + (", eot " + "+".join(e["kind"] for e in eot) if eot else "")


def variants_table(every: pd.DataFrame, metric: str = RETAINED_METRIC) -> pd.DataFrame:
    """Every protection variant tried: its settings, its visibility and, per victim and defence, the share of
    its protection retained (or "≈ clean" where it is no different from clean data)."""
    m = defence_matrix(every, metric)
    m = m[m["method"] != "clean"]
    if m.empty:
        return pd.DataFrame()
    vis = every[every["defence"] == "none"].set_index(["dataset", "method", "apply", "surrogate"])
    vis = vis[~vis.index.duplicated()]
    rows = []
    for key, sub in m.groupby(["dataset", "method", "apply", "surrogate"], sort=False):
        row = {"dataset": key[0], "protection": protection_label(*key[1:], sub["method_params"].iloc[0]),
               "settings": variant_params(sub["method_params"].iloc[0])}
        for k in VISIBILITY:
            row[k] = float(vis[k].get(key, float("nan"))) if k in vis else float("nan")
        for r in sub.to_dict("records"):
            row[f"{r['victim']} / {r['defence']}"] = effect_label(r)
        rows.append(row)
    out = pd.DataFrame(rows)
    cells = [c for c in out.columns if " / " in c]
    out[cells] = out[cells].fillna("")  # a protection the grid did not cross with that victim and defence
    return out
