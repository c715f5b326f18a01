"""The human-facing report: a results table (mean ± spread over seeds, chance level) and plots."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import pandas as pd

from .atomic import atomic_path

RECALLS = ["i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"]
GROUP = ["dataset", "method", "apply", "surrogate", "victim"]


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for every grid cell."""
    cols = RECALLS + ["rsum", "i2t_medr", "t2i_medr"]
    g = summary.groupby(GROUP, sort=False)
    mean = g[cols].mean()
    std = g[cols].std(ddof=1).fillna(0.0).add_suffix("_std")
    chance = g[[f"chance_{c}" for c in RECALLS] + ["chance_rsum"]].first()
    out = pd.concat([mean, std, chance, g.size().rename("seeds")], axis=1).reset_index()
    return out


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def recall_plot(agg: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.method}" + (f" [{r.apply}]" if r.apply not in ("", "both", "none") else "")
              + (f"\n{r.surrogate}->{r.victim}" if r.surrogate not in ("", "none") else f"\n{r.victim}")
              for r in agg.itertuples()]
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(agg) + 2) * 1.0, 3.6), sharey=True)
    for ax, d in zip(axes, ("i2t", "t2i")):
        x = range(len(agg))
        ax.bar(x, agg[f"{d}_r1"], yerr=agg[f"{d}_r1_std"], color="#4a7ab8", capsize=3, label="R@1")
        ax.scatter(x, agg[f"chance_{d}_r1"], marker="_", s=300, color="#c0392b", zorder=3, label="chance")
        ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=8)
        ax.set_title({"i2t": "image → text R@1 (%)", "t2i": "text → image R@1 (%)"}[d])
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"clean-test retrieval ({', '.join(agg['dataset'].unique())})", fontsize=10)
    png = _fig_png(fig)
    plt.close(fig)
    return png


def curves_plot(train_records: list[Path]) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(Path(p).read_text()) for p in train_records]
    if not recs:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for r in recs:
        c = r["cell"]
        label = f"{c.get('method')}[{c.get('apply')}] {c.get('victim')} s{r['seed']}"
        ax.plot([h["epoch"] for h in r["history"]], [h["loss"] for h in r["history"]], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    png = _fig_png(fig)
    plt.close(fig)
    return png


def _fmt(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.1f}" + (f" ± {std:.1f}" if seeds > 1 else "")


def results_table_html(agg: pd.DataFrame) -> str:
    head = "".join(f"<th>{h}</th>" for h in GROUP + ["seeds"] + RECALLS + ["rsum", "t2i medR"])
    rows = []
    best = {c: agg[c].max() for c in RECALLS + ["rsum"]}
    worst = {c: agg[c].min() for c in RECALLS + ["rsum"]}
    for r in agg.to_dict("records"):
        cells = [f"<td>{html.escape(str(r[k]))}</td>" for k in GROUP] + [f"<td>{r['seeds']}</td>"]
        for c in RECALLS + ["rsum"]:
            cls = "best" if r[c] == best[c] and len(agg) > 1 else ("worst" if r[c] == worst[c] and len(agg) > 1 else "")
            chance = r[f"chance_{c}"]
            cells.append(f'<td class="{cls}">{_fmt(r[c], r[c + "_std"], r["seeds"])}'
                         f'<span class="chance"> / {chance:.2f}</span></td>')
        cells.append(f"<td>{r['t2i_medr']:.1f}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0}td:nth-child(-n+5){text-align:left}
.best{background:#d8f0d8}.worst{background:#f6dada}.chance{color:#999;font-size:11px}img{max-width:100%}
pre{background:#f7f7f7;padding:1em;font-size:12px;overflow:auto}"""


def write_report(summary: pd.DataFrame, train_records: list[Path], out_dir: str | Path, meta: dict) -> None:
    """index.html is self-contained (images inlined); the PNGs and CSV sit beside it for other tools."""
    agg = aggregate(summary)
    recall_png = recall_plot(agg)
    curves_png = curves_plot(train_records)
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        agg.to_csv(tmp / "results.csv", index=False)
        (tmp / "recall.png").write_bytes(recall_png)
        sections = [
            "<h1>Unlearnable examples: clean-test retrieval</h1>",
            "<p>Recall in percent on the clean test split (mean ± standard deviation over seeds); the grey "
            "number after each value is the random-guess level. Green: best in column; red: worst.</p>",
            results_table_html(agg),
            "<h2>Recall@1 by method</h2>", _img(recall_png),
        ]
        if curves_png:
            (tmp / "training_curves.png").write_bytes(curves_png)
            sections += ["<h2>Training curves</h2>", _img(curves_png)]
        runs = summary[GROUP + ["seed", "mlflow_run_id"]].to_html(index=False)
        sections += ["<h2>Runs</h2>", runs, "<h2>Configuration and versions</h2>",
                     f"<pre>{html.escape(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre>"]
        (tmp / "index.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'>"
                                        f"<title>unlearnable report</title><style>{CSS}</style></head><body>"
                                        + "\n".join(sections) + "</body></html>")


def _img(png: bytes) -> str:
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
