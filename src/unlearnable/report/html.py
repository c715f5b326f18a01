"""The human-facing report: the grid in the paper's table form, plots, a gallery and the run's provenance.

`index.html` is self-contained (every image inlined), so it can be mailed or archived as one file.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..data.folders import ProtectionDir, ReportDir
from . import gallery, plots
from .stats import (NO_DIFFERENCE_NOTE, RETAINED_METRIC, aggregate, defence_grids, defence_matrix, defence_order,
                    effect_label, metric_label, params_of, protection_label, variants_table, with_defence)


def defence_table_html(agg: pd.DataFrame, metric: str = RETAINED_METRIC) -> str:
    """Protection x defence, one table per dataset and victim: `metric` (mean ± sd) and, for protections, the
    protection retained."""
    if defence_order(defence_matrix(agg, metric)) == ["none"]:
        return ""
    out = []
    for dataset, victim, defences, protections, cells in defence_grids(agg, metric):
        head = "<thead><tr><th>defence</th>" + "".join(
            f"<th>{html.escape(protection_label(*p, params_of(cells, p)))}</th>" for p in protections) + "</tr></thead>"
        body = []
        for dfc in defences:
            row = [f"<td>{html.escape(dfc)}</td>"]
            for p in protections:
                r = cells.get((dfc, p))
                if r is None:
                    row.append("<td></td>")
                    continue
                ret = "" if p[0] == "clean" else f"<br><small>{html.escape(effect_label(r, 'retained {}'))}</small>"
                row.append(f"<td>{_fmt(r['mean'], r['std'], int(r['seeds']))}{ret}</td>")
            body.append("<tr>" + "".join(row) + "</tr>")
        out.append(f"<h3>{html.escape(dataset)}, victim {html.escape(victim)}</h3>"
                   f'<table class="defences">{head}<tbody>{"".join(body)}</tbody></table>')
    return ("".join(out) + f"<p>{metric_label(metric)} on clean test data after the victim trained on defended data; "
            "retained = (clean<sub>d</sub> − protected<sub>d</sub>) / (clean<sub>d</sub> − chance) under the same "
            f"defence d; {html.escape(NO_DIFFERENCE_NOTE)}</p>")


def variants_table_html(every: pd.DataFrame, metric: str = RETAINED_METRIC) -> str:
    """Every protection variant: settings, visibility and the share retained per victim and defence."""
    v = variants_table(every, metric)
    if v.empty or set(every["defence"]) == {"none"}:
        return ""
    cols = ["dataset", "protection", "settings", "psnr", "ssim", "mean_shift_max"] + list(v.columns[6:])
    fmt = {"psnr": "{:.1f}", "ssim": "{:.3f}", "mean_shift_max": "{:.1f}"}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt[c].format(r[c]) if c in fmt else str(r[c]))}</td>"
                                    for c in cols) + "</tr>" for r in v.to_dict("records"))
    return (f'<table class="defences"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            "<p>PSNR (dB) and SSIM of the published images against the clean ones, and the largest per-channel "
            f"mean shift (1/255); then, per victim / defence, the protection retained ({metric_label(metric)}). "
            f"{html.escape(NO_DIFFERENCE_NOTE)}</p>")


def _fmt(mean: float, std: float, seeds: int) -> str:
    return f"{mean:.1f}" + (f"<small> ± {std:.1f}</small>" if seeds > 1 else "")


COLUMNS = [("i2t_r1", "R@1"), ("i2t_r5", "R@5"), ("i2t_r10", "R@10"), ("t2i_r1", "R@1"), ("t2i_r5", "R@5"),
           ("t2i_r10", "R@10"), ("rsum", "rsum")]


def paper_table_html(agg: pd.DataFrame) -> str:
    """Rows: dataset x method; columns: image->text and text->image R@1/5/10 and rsum, mean ± sd over seeds.

    Among the protected rows of a dataset, the lowest value of a column (strongest protection) is marked ▼,
    the highest (weakest) ▲. Each dataset ends with its chance row.
    """
    head = ("<thead><tr><th rowspan=2>dataset</th><th rowspan=2>method</th><th rowspan=2>seeds</th>"
            "<th colspan=3>image → text</th><th colspan=3>text → image</th><th rowspan=2>rsum</th></tr><tr>"
            + "".join(f"<th>{h}</th>" for c, h in COLUMNS if c != "rsum") + "</tr></thead>")
    body = []
    for d, sub in agg.groupby("dataset", sort=False):
        prot = sub[sub["method"] != "clean"]
        lo = {c: prot[c].min() for c, _ in COLUMNS} if len(prot) > 1 else {}
        hi = {c: prot[c].max() for c, _ in COLUMNS} if len(prot) > 1 else {}
        for i, r in enumerate(sub.to_dict("records")):
            cells = [f"<td rowspan={len(sub) + 1}>{html.escape(d)}</td>"] if i == 0 else []
            cls = ' class="clean"' if r["method"] == "clean" else ""
            cells += [f"<td{cls}>{html.escape(plots.label(r))}</td>", f"<td>{r['seeds']}</td>"]
            for c, _ in COLUMNS:
                mark = ""
                if r["method"] != "clean" and lo:
                    mark = ' class="best">▼ ' if r[c] == lo[c] else (' class="worst">▲ ' if r[c] == hi[c] else ">")
                cells.append(f"<td{mark or '>'}{_fmt(r[c], r[c + '_std'], r['seeds'])}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        first = sub.iloc[0]
        body.append('<tr class="chance"><td>chance</td><td></td>'
                    + "".join(f"<td>{first[f'chance_{c}']:.2f}</td>" for c, _ in COLUMNS) + "</tr>")
    return f'<table class="paper">{head}<tbody>{"".join(body)}</tbody></table>'


def runs_table_html(summary: pd.DataFrame, train_records: list[dict], protections: list[dict]) -> str:
    """Per evaluated model: timings and MLflow run ids (parent run of the cell, training, evaluation)."""
    def cell_key(cell: dict, seed) -> tuple:  # the full cell: a defended run is a run of its own
        return (cell["dataset"], cell["method"], cell.get("apply") or "none", cell.get("surrogate") or "none",
                cell["victim"], cell.get("defence") or "none", int(seed))

    rec = {cell_key(r["cell"], r["seed"]): r for r in train_records}
    prot = {(p["cell"]["dataset"], p["cell"]["method"], p["cell"]["surrogate"], int(p["cell"]["seed"])): p
            for p in protections}
    rows = []
    for r in with_defence(summary).to_dict("records"):
        t = rec.get(cell_key(r, r["seed"]), {})
        p = prot.get((r["dataset"], r["method"], r["surrogate"], int(r["seed"])), {})
        rows.append({"dataset": r["dataset"], "cell": plots.label(r), "seed": r["seed"],
                     "protect s": f"{p['seconds']:.0f}" if p else "",
                     "train s": f"{t.get('seconds', 0):.0f}" if t else "",
                     "MLflow cell run": t.get("mlflow_parent_run_id", ""),
                     "MLflow train run": t.get("mlflow_run_id", ""),
                     "MLflow eval run": r.get("mlflow_run_id", ""), "MLflow protect run": p.get("mlflow_run_id", "")})
    return pd.DataFrame(rows).to_html(index=False, classes="runs", border=0)


def gallery_html(entries: list[dict]) -> str:
    if not entries:
        return "<p>No protected data in this grid.</p>"
    parts = []
    for e in entries:
        parts.append(f"<h3>{html.escape(e['title'])}</h3><div class='gallery'>")
        for s in e["samples"]:
            parts.append(
                "<figure>" + "".join(f"<div><img class='px' alt='{a}' src='data:image/png;base64,"
                                     f"{base64.b64encode(b).decode()}'><span>{a}</span></div>"
                                     for a, b in (("clean", s.clean), ("protected", s.protected),
                                                  (f"noise, amplified (max {s.linf}/255)", s.noise)))
                + f"<figcaption><b>published:</b> {html.escape(s.caption)}<br>"
                  f"<span class='orig'>original: {html.escape(s.original)}</span></figcaption></figure>")
        parts.append("</div>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0;text-align:center}table.paper td:nth-child(-n+2){text-align:left}td.clean{font-style:italic}
.best{background:#d8f0d8;font-weight:bold}.worst{background:#f6dada}tr.chance td{color:#888;font-size:11px}
small{color:#666}img{max-width:100%}img.px{width:128px;height:128px;image-rendering:pixelated}
.gallery{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0;border:1px solid #ddd;padding:.5em;width:430px}
figure>div{display:inline-block;text-align:center;font-size:11px;margin-right:4px}figure>div span{display:block}
figcaption{font-size:12px;margin-top:.4em}.orig{color:#888}table.runs{font-size:11px}
pre{background:#f7f7f7;padding:1em;font-size:12px;overflow:auto}"""


MISSING = {  # what each figure's place says when the grid has nothing to draw there (keys: ReportDir.FILES)
    "recall": "No evaluated models.",
    "transfer": "This grid has one surrogate and one victim: no transfer axis.",
    "trigger_lengths": "No methods in this grid differ only in trigger length (set grid.trigger_lengths).",
    "curves": "No training curves.",
    "heatmap": "This grid has no defence axis.",
    "visibility": "This grid has no defence named scraper, or no visibility was recorded.",
}


def write_report(summary: pd.DataFrame, out_dir: str | Path, train_records: list[Path], protections: list[Path],
                 published: list[dict], meta: dict, metric: str = RETAINED_METRIC) -> None:
    """`published`: dicts with the folder (`path`), its dataset's `manifest` and `store`, and a `title`;
    `metric`: the recall the protection retained is read on."""
    every = aggregate(summary)
    agg = every[every["defence"] == "none"]  # the main table and figures: undefended victims
    records = [json.loads(Path(p).read_text()) for p in train_records]
    prots = [ProtectionDir(d).record() for d in protections]  # each names its cell
    figures = {
        "recall": plots.recall_by_method(agg),
        "curves": plots.training_curves(prots, records),
        "trigger_lengths": plots.trigger_lengths(agg),
        "transfer": plots.transfer_matrix(agg),
        "heatmap": plots.retained_heatmap(every, metric),
        "visibility": plots.visibility_vs_retained(every, "scraper", metric),
    }
    entries = [{"title": e["title"], "samples": gallery.samples(e["path"], e["manifest"], e["store"])}
               for e in published]
    out_dir = Path(out_dir)
    with atomic_path(out_dir, replace_dir=True) as tmp:  # results/report: written by this job only
        tmp.mkdir(parents=True)
        folder = ReportDir(tmp)
        every.to_csv(folder.file("table"), index=False)
        for name, png in figures.items():  # every file exists, so Snakemake's --report can always list it
            folder.file(name).write_bytes(png or plots.note(MISSING[name]))

        def fig(name: str) -> str:
            return _img(figures[name]) if figures[name] else f"<p><i>{MISSING[name]}</i></p>"

        sections = [
            "<h1>Unlearnable examples: clean-test retrieval</h1>",
            f"<p>{len(summary)} evaluated models in {len(agg)} cells. Recall in percent on the clean test split, "
            "mean ± standard deviation over seeds; each dataset ends with the random-guess level. Among the "
            "protected rows: ▼ lowest recall (strongest protection), ▲ highest. rsum is the sum of the six "
            "recalls.</p>",
            paper_table_html(agg),
            *(["<h2>Protection under defences</h2>", defence_table_html(every, metric),
               "<h3>Protection retained: protection × defence</h3>", fig("heatmap"),
               "<h3>Visibility against protection retained under the scraper chain</h3>",
               fig("visibility"),
               "<h3>Every variant tried</h3>", variants_table_html(every, metric)]
              if set(every["defence"]) != {"none"} else []),
            "<h2>Recall@1 by method and dataset</h2>", fig("recall"),
            "<h2>Transfer: surrogate × victim</h2>", fig("transfer"),
            "<h2>Trigger-length ablation</h2>", fig("trigger_lengths"),
            "<h2>Surrogate loss and training curves</h2>", fig("curves"),
            "<h2>Gallery</h2><p>Published training images next to their clean originals; the noise is the "
            "difference, scaled so that mid-grey is zero and full contrast is the budget ε.</p>",
            gallery_html(entries),
            "<h2>Runs: timings and MLflow ids</h2>", runs_table_html(summary, records, prots),
            "<h2>Configuration and versions</h2>",
            f"<pre>{html.escape(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre>",
        ]
        folder.file("html").write_text("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                                        f"<title>unlearnable report</title><style>{CSS}</style></head><body>"
                                        + "\n".join(sections) + "</body></html>", encoding="utf-8")


def _img(png: bytes) -> str:
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
