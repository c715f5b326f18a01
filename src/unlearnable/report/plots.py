"""The report's figures, each returned as PNG bytes (None when the grid has nothing to show)."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from ..protect.config import method_config
from ..protect.kinds import METHOD_KINDS
from .stats import RETAINED_METRIC


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def note(text: str) -> bytes:
    """A small figure that says why a plot is absent (so every report file always exists)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, color="#555")
    return _png(fig)


def label(r) -> str:
    """method [apply] surrogate->victim, the way a cell is named everywhere in the report (a method by its kind,
    with the grid's name beside it where they differ)."""
    from .stats import method_label

    text = (method_label(str(r["method"]), r.get("method_params"))
            + (f" [{r['apply']}]" if r["apply"] not in ("", "both", "none") else ""))
    return text + (f" {r['surrogate']}→{r['victim']}" if r["surrogate"] not in ("", "none") else f" {r['victim']}")


def recall_by_method(agg: pd.DataFrame) -> bytes:
    """R@1 in both directions per cell, one panel row per dataset, chance marked."""
    plt = _plt()
    datasets = list(dict.fromkeys(agg["dataset"]))
    width = max(6.0, 0.55 * agg.groupby("dataset").size().max() + 2)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(2 * width, 3.4 * len(datasets)), squeeze=False)
    for row, d in zip(axes, datasets):
        sub = agg[agg["dataset"] == d].reset_index(drop=True)
        x = np.arange(len(sub))
        for ax, direction in zip(row, ("i2t", "t2i")):
            colours = ["#7f8c8d" if m == "clean" else "#4a7ab8" for m in sub["method"]]
            ax.bar(x, sub[f"{direction}_r1"], yerr=sub[f"{direction}_r1_std"], color=colours, capsize=3)
            ax.scatter(x, sub[f"chance_{direction}_r1"], marker="_", s=300, color="#c0392b", zorder=3,
                       label="chance")
            ax.set_xticks(x, [label(r) for r in sub.to_dict("records")], rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{d}: {'image → text' if direction == 'i2t' else 'text → image'} R@1 (%)", fontsize=10)
            ax.set_ylim(0, max(5.0, float((sub[f"{direction}_r1"] + sub[f"{direction}_r1_std"]).max()) * 1.15))
            ax.grid(axis="y", alpha=0.3)
        row[0].legend(fontsize=8)
    return _png(fig)


def training_curves(protections: list[dict], train_records: list[dict]) -> bytes | None:
    """Left: the surrogate's loss per protection round; right: each CLIP's training loss per epoch."""
    if not protections and not train_records:
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    for p in protections:
        h = [x for x in p["history"] if x.get("surrogate_loss") == x.get("surrogate_loss")]
        if h:
            c = p["cell"]
            left.plot([x["round"] for x in h], [x["surrogate_loss"] for x in h], marker="o", ms=3,
                      label=f"{c['dataset']} {c['method']} {c['surrogate']} s{c['seed']}")
    left.set_xlabel("protection round")
    left.set_ylabel("surrogate contrastive loss")
    left.set_title("surrogate loss on the protected data", fontsize=10)
    for r in train_records:
        c = r["cell"]
        style = "--" if c["method"] == "clean" else "-"
        right.plot([h["epoch"] for h in r["history"]], [h["loss"] for h in r["history"]], style, lw=1,
                   label=f"{c['dataset']} {label(c)} s{r['seed']}")
    right.set_xlabel("epoch")
    right.set_ylabel("training loss")
    right.set_yscale("log")
    right.set_title("CLIP training loss (dashed: clean)", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=5, ncol=2)
    return _png(fig)


def trigger_lengths(agg: pd.DataFrame) -> bytes | None:
    """t2i R@1 against trigger length k, for methods that differ only in k (e.g. mem3 vs mem5)."""
    rows = []
    for r in agg.to_dict("records"):
        params = json.loads(r.get("method_params") or "{}")
        kind = METHOD_KINDS.get(params.get("kind"))
        if kind is not None and kind.has_trigger:
            rest = {k: v for k, v in params.items() if k != "token_num"}
            rows.append({**r, "k": method_config(params).token_num, "family": json.dumps(rest, sort_keys=True)})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    keys = ["dataset", "family", "apply", "surrogate", "victim"]
    groups = [g for _, g in df.groupby(keys, sort=False) if g["k"].nunique() > 1]
    if not groups:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for g in groups:
        g = g.sort_values("k")
        first = g.iloc[0]
        kind = json.loads(first["family"])["kind"]
        ax.errorbar(g["k"], g["t2i_r1"], yerr=g["t2i_r1_std"], marker="o", capsize=3,
                    label=f"{first['dataset']} {kind} [{first['apply']}] {first['surrogate']}→{first['victim']}")
        ax.axhline(first["chance_t2i_r1"], color="#c0392b", lw=0.8, ls=":")
    ax.set_xlabel("trigger length k (tokens)")
    ax.set_ylabel("text → image R@1 (%)")
    ax.set_title("trigger-length ablation (dotted: chance)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def transfer_matrix(agg: pd.DataFrame) -> bytes | None:
    """Per protected method: t2i R@1 of a victim (columns) trained on data protected with a surrogate (rows)."""
    prot = agg[agg["method"] != "clean"]
    panels = [(key, g) for key, g in prot.groupby(["dataset", "method", "apply"], sort=False)
              if g["surrogate"].nunique() > 1 or g["victim"].nunique() > 1]
    if not panels:
        return None
    plt = _plt()
    n = len(panels)
    cols = min(n, 3)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.6 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, ((d, m, a), g) in zip(axes.ravel(), panels):
        mat = g.pivot_table(index="surrogate", columns="victim", values="t2i_r1")
        im = ax.imshow(mat.to_numpy(), cmap="viridis_r", vmin=0, vmax=max(1.0, float(agg["t2i_r1"].max())))
        ax.set_xticks(range(mat.shape[1]), mat.columns, fontsize=8)
        ax.set_yticks(range(mat.shape[0]), mat.index, fontsize=8)
        ax.set_xlabel("victim (retrained)")
        ax.set_ylabel("surrogate (protected with)")
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                v = mat.iat[i, j]
                ax.text(j, i, "–" if v != v else f"{v:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if v == v and v < 0.5 * float(agg["t2i_r1"].max()) else "black")
        ax.set_title(f"{d}: {m}" + (f" [{a}]" if a != "both" else ""), fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, label="t2i R@1 (%)")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return _png(fig)


def retained_heatmap(every: pd.DataFrame, metric: str = RETAINED_METRIC) -> bytes | None:
    """Protection (rows) x defence (columns), one panel per dataset and victim: the share of the protection
    retained against clean data under the same defence; "≈" marks no difference from clean."""
    fig = retained_heatmap_figure(every, metric)
    return None if fig is None else _png(fig)


def retained_heatmap_figure(every: pd.DataFrame, metric: str = RETAINED_METRIC):
    """The panels are stacked, one per row, with one colour bar for all of them: side by side, a panel's row
    labels ran into its left neighbour's colour bar."""
    from .stats import defence_grids, effect_label, params_of, protection_label

    panels = [p for p in defence_grids(every, metric) if len(p[2]) > 1]
    if not panels:
        return None
    plt = _plt()
    width = max(5.0, 0.9 * max(len(p[2]) for p in panels) + 4)
    heights = [0.3 * len(p[3]) + 1.2 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(width, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    im = None
    for ax, (dataset, victim, defences, protections, cells) in zip(axes[:, 0], panels):
        prot = [p for p in protections if p[0] != "clean"]
        mat = np.full((len(prot), len(defences)), np.nan)
        for i, p in enumerate(prot):
            for j, d in enumerate(defences):
                r = cells.get((d, p))
                if r is not None:
                    mat[i, j] = 0.0 if r["within_spread"] else r["retained"]
                    ax.text(j, i, effect_label(r).replace("≈ clean", "≈"), ha="center", va="center", fontsize=7,
                            color="black" if mat[i, j] != mat[i, j] or mat[i, j] > 0.35 else "white")
        im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(defences)), defences, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(prot)), [protection_label(*p, params_of(cells, p)) for p in prot], fontsize=7)
        ax.set_title(f"{dataset}, victim {victim}", fontsize=10)
    fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.046, label="protection retained")
    return fig


def visibility_vs_retained(every: pd.DataFrame, defence: str = "scraper",
                           metric: str = RETAINED_METRIC) -> bytes | None:
    """Each protection's PSNR (published against clean, higher is less visible) against the share of its
    protection retained under `defence`, one marker per victim."""
    from .stats import defence_matrix, protection_label

    if "psnr" not in every or defence not in set(every["defence"]):
        return None
    m = defence_matrix(every, metric)
    m = m[(m["defence"] == defence) & (m["method"] != "clean")]
    psnr = every[every["defence"] == "none"].set_index(["dataset", "method", "apply", "surrogate"])["psnr"]
    psnr = psnr[~psnr.index.duplicated()]
    if m.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (victim, sub), marker in zip(m.groupby("victim", sort=False), "os^Dv"):
        xs = [psnr.get((r["dataset"], r["method"], r["apply"], r["surrogate"]), np.nan) for r in sub.to_dict("records")]
        ys = [0.0 if r["within_spread"] else r["retained"] for r in sub.to_dict("records")]
        ax.scatter(xs, ys, marker=marker, label=f"victim {victim}")
        for x, y, r in zip(xs, ys, sub.to_dict("records")):
            name = protection_label(r["method"], r["apply"], r["surrogate"], r["method_params"])
            ax.annotate(name, (x, y), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.5, color="#c0392b", lw=0.8, ls="--", label="50% retained")
    ax.set_xlabel("PSNR of the published images (dB, higher = less visible)")
    ax.set_ylabel(f"protection retained under {defence}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
