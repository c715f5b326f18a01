"""README tables from a run's `summary.parquet`: numbers are generated, never typed.

    unlearnable table results/summary.parquet

Mean ± standard deviation over seeds (sample sd), one row per method/apply cell of each dataset, the
chance row, and a line saying how many seeds and on which CPU and threads the numbers were measured.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .stats import (NO_DIFFERENCE_NOTE, RETAINED_METRIC, aggregate, defence_grids, effect_label, method_label,
                    metric_label, params_of, protection_label, variants_table)

COLUMNS = [("t2i_r1", "t2i R@1"), ("i2t_r1", "i2t R@1"), ("t2i_r10", "t2i R@10"), ("rsum", "rsum")]


def _cell(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if seeds > 1 else f"{mean:.1f}"


def _published(apply: str, method_params: str) -> str:
    """What the victim saw: `noise`, `trigger` or `both`, given what the method makes and what was applied."""
    import json

    from ..protect.config import method_config

    cfg = method_config(json.loads(method_params))
    has = {"noise": cfg.kind.noise != "none", "trigger": cfg.trigger_len > 0}
    parts = [p for p in ("noise", "trigger") if has[p] and apply in (p, "both")]
    return " + ".join(parts) or "nothing"


def defence_table(agg: pd.DataFrame, metric: str = RETAINED_METRIC) -> list[str]:
    """Protection x defence, one table per dataset and victim: `metric` mean ± sd, and the protection
    retained under each defence."""
    out = []
    for dataset, victim, defences, protections, cells in defence_grids(agg, metric):
        out += [f"Protection under defences, {dataset}, victim {victim} ({metric_label(metric)}; retained = (clean_d - "
                "protected_d) / (clean_d - chance)):", "",
                "| defence | " + " | ".join(protection_label(*p, params_of(cells, p)) for p in protections) + " |",
                "|---|" + "---|" * len(protections)]
        for dfc in defences:
            row = []
            for p in protections:
                r = cells.get((dfc, p))
                text = "" if r is None else _cell(r["mean"], r["std"], int(r["seeds"]))
                if r is None or p[0] == "clean":
                    row.append(text)
                else:
                    row.append(f"{text} ({effect_label(r)})")
            out.append(f"| {dfc} | " + " | ".join(row) + " |")
        out.append("")
    if out:
        out += [NO_DIFFERENCE_NOTE, ""]
    return out


def variants_markdown(every: pd.DataFrame, metric: str = RETAINED_METRIC) -> list[str]:
    """Every variant tried, its visibility and the share retained per victim and defence."""
    v = variants_table(every, metric)
    if v.empty or set(every["defence"]) == {"none"}:
        return []
    head = ["protection", "settings", "PSNR", "SSIM", "shift"] + list(v.columns[6:])
    out = ["Every variant (PSNR in dB and SSIM of the published images against the clean ones; shift: the "
           f"largest per-channel mean shift in 1/255; then the protection retained, {metric_label(metric)}):", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in v.to_dict("records"):
        vis = [f"{r['psnr']:.1f}", f"{r['ssim']:.3f}", f"{r['mean_shift_max']:.1f}"]
        out.append("| " + " | ".join([r["protection"], r["settings"]] + vis + [r[c] for c in head[5:]]) + " |")
    return out + [""]


def markdown_table(summary: pd.DataFrame, metric: str = RETAINED_METRIC) -> str:
    every = aggregate(summary)
    agg = every[every["defence"] == "none"]
    out = []
    for dataset, sub in agg.groupby("dataset", sort=False):
        clean_first = sub.assign(_c=sub["method"] != "clean").sort_values(["_c"], kind="stable")
        header = ["method", "published", "surrogate → victim", "seeds"] + [h for _, h in COLUMNS]
        out += [f"**{dataset}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in clean_first.itertuples():
            published = "–" if r.method == "clean" else _published(r.apply, r.method_params)
            models = r.victim if r.method == "clean" else f"{r.surrogate} → {r.victim}"
            cells = [_cell(getattr(r, c), getattr(r, f"{c}_std"), r.seeds) for c, _ in COLUMNS]
            name = method_label(r.method, r.method_params)
            out.append("| " + " | ".join([name, published, models, str(r.seeds)] + cells) + " |")
        first = sub.iloc[0]
        chance = [f"{first[f'chance_{c}']:.2f}" for c, _ in COLUMNS]
        out.append("| chance | | | | " + " | ".join(chance) + " |")
        out.append("")
    if set(every["defence"]) != {"none"}:
        out += defence_table(every, metric)
        out += variants_markdown(every, metric)
    cpus = sorted(set(summary.get("cpu", pd.Series(dtype=str)).dropna()) - {""})
    threads = sorted(set(summary.get("torch_threads", pd.Series(dtype=str)).dropna()) - {""})
    seeds = sorted(summary["seed"].unique().tolist())
    over = f"mean ± sd over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]} only"
    gpus = sorted(set(summary.get("gpu", pd.Series(dtype=str)).dropna()) - {"", "none"})
    precisions = sorted(set(summary.get("precision", pd.Series(dtype=str)).dropna()) - {""})
    on_gpu = f"; trained on {' / '.join(gpus)} in {'/'.join(precisions)}" if gpus else ""
    out.append(f"Recall in %, {over}; measured on "
               f"{' / '.join(cpus) or 'an unrecorded CPU'}, {'/'.join(threads) or '?'} torch thread(s) per job"
               f"{on_gpu}.")
    return "\n".join(out)


def table_command(summary_path: str | Path, metric: str = RETAINED_METRIC) -> str:
    return markdown_table(pd.read_parquet(summary_path), metric)
