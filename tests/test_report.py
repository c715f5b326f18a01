"""The report: the paper-form table, the transfer matrix and a real render in headless Chromium."""
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unlearnable.report.html import paper_table_html, write_report
from unlearnable.report.plots import transfer_matrix, trigger_lengths
from unlearnable.report.stats import aggregate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _summary() -> pd.DataFrame:
    """2 surrogates x 2 victims x 2 methods (+ clean) x 2 seeds, with known recalls."""
    rows = []
    for seed in (0, 1):
        for victim in ("vit", "rn"):
            rows.append({"dataset": "d", "method": "clean", "apply": "none", "surrogate": "none", "victim": victim,
                         "seed": seed, "t2i_r1": 60.0 + seed, "method_params": "{}"})
            for method, k in (("mem3", 3), ("mem5", 5)):
                for sur in ("vit", "rn"):
                    base = 2.0 if sur == victim else 10.0
                    rows.append({"dataset": "d", "method": method, "apply": "both", "surrogate": sur,
                                 "victim": victim, "seed": seed, "t2i_r1": base + k + seed,
                                 "method_params": json.dumps({"kind": "mem", "token_num": k})})
    df = pd.DataFrame(rows)
    for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r5", "t2i_r10"):
        df[c] = df["t2i_r1"] + 1
    df["rsum"] = df[[c for c in df if re.match(r"(i2t|t2i)_r\d+$", c)]].sum(axis=1)
    for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        df[f"chance_{c}"] = 0.5
    df["i2t_medr"] = df["t2i_medr"] = 3.0
    df["mlflow_run_id"] = "abc"
    return df


def test_paper_table_marks_strongest_and_weakest_protection():
    agg = aggregate(_summary())
    assert len(agg) == 10 and (agg["seeds"] == 2).all()
    row = agg[(agg.method == "mem3") & (agg.surrogate == "vit") & (agg.victim == "vit")].iloc[0]
    assert row["t2i_r1"] == pytest.approx(5.5) and row["t2i_r1_std"] == pytest.approx(np.sqrt(0.5))
    table = paper_table_html(agg)
    assert table.count("<tr class=\"chance\">") == 1 and "image → text" in table
    best = re.findall(r'class="best">▼ ([\d.]+)', table)
    worst = re.findall(r'class="worst">▲ ([\d.]+)', table)
    assert set(best) == {"5.5", "6.5", "38.0"} and set(worst) == {"15.5", "16.5", "98.0"}  # R@k and rsum
    assert "60.5<small> ± 0.7</small>" in table  # clean, mean ± sd over the two seeds


def test_transfer_matrix_and_trigger_length_plots_exist_only_with_their_axes():
    agg = aggregate(_summary())
    assert transfer_matrix(agg)[:8] == b"\x89PNG\r\n\x1a\n"
    assert trigger_lengths(agg)[:8] == b"\x89PNG\r\n\x1a\n"
    one = agg[(agg.surrogate.isin(["none", "vit"])) & (agg.victim == "vit") & (agg.method != "mem5")]
    assert transfer_matrix(one) is None and trigger_lengths(one) is None


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    write_report(_summary(), tmp_path / "report", [], [], [], {"config": {"grid": "test"}, "versions": {}})
    html = (tmp_path / "report" / "index.html").read_text()
    assert re.findall(r'src="(?!data:)', html) == [] and "<script" not in html  # self-contained, nothing to fetch
    shot = tmp_path / "shot.png"
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--enable-logging=stderr", "--v=0", "--window-size=1400,2400", f"--screenshot={shot}",
                          (tmp_path / "report" / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln or "Failed to load" in ln]
    assert console == []
    px = np.asarray(Image.open(shot).convert("RGB"))
    assert px.shape == (2400, 1400, 3)
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50  # text, tables and plots drawn, not a blank page
    assert (tmp_path / "report" / "transfer_matrix.png").is_file()


def test_readme_table_is_mean_and_sample_sd_over_seeds_with_chance_and_machine():
    from unlearnable.report.mdtable import markdown_table

    rows = []
    for seed, (clean, mem) in enumerate([(40.0, 2.0), (50.0, 4.0), (60.0, 9.0)]):
        for method, value, params in (("clean", clean, {}), ("mem3", mem, {"kind": "mem", "token_num": 3})):
            rows.append({"dataset": "shapes", "method": method, "apply": "none" if method == "clean" else "noise",
                         "surrogate": "none" if method == "clean" else "vit", "victim": "vit", "seed": seed,
                         "method_params": json.dumps(params), "cpu": "Test CPU", "torch_threads": "1",
                         **{f"{d}_r{k}": value for d in ("i2t", "t2i") for k in (1, 5, 10)},
                         "rsum": 6 * value, "i2t_medr": 1.0, "t2i_medr": 1.0,
                         **{f"chance_{d}_r{k}": 0.5 * k for d in ("i2t", "t2i") for k in (1, 5, 10)},
                         "chance_rsum": 16.0})
    text = markdown_table(pd.DataFrame(rows))
    lines = text.splitlines()
    assert "| clean | – | vit | 3 | 50.0 ± 10.0 | 50.0 ± 10.0 | 50.0 ± 10.0 | 300.0 ± 60.0 |" in lines
    assert "| mem · mem3 | noise | vit → vit | 3 | 5.0 ± 3.6 |" in text  # sample sd of 2, 4, 9; by kind, then name
    assert "| chance | | | | 0.50 | 0.50 | 5.00 | 16.00 |" in lines
    assert lines[-1] == "Recall in %, mean ± sd over seeds 0, 1, 2; measured on Test CPU, 1 torch thread(s) per job."


def _every_metric_from_t2i(rows: list[dict]) -> pd.DataFrame:
    """Summary rows whose every recall (and rsum, median ranks) is their t2i R@1, with chance 0."""
    df = pd.DataFrame(rows)
    for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r5", "t2i_r10", "rsum", "i2t_medr", "t2i_medr"):
        df[c] = df["t2i_r1"]
    for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        df[f"chance_{c}"] = 0.0
    return df


def test_defence_table_has_a_row_per_defence_and_a_column_per_protection_for_each_victim():
    """Rows: undefended first, then defences by name; columns: clean first; retained against the clean
    baseline under the same defence and victim; a cell the grid lacks stays empty."""
    from unlearnable.report.html import defence_table_html
    from unlearnable.report.mdtable import defence_table

    rows = []
    values = {("scratch", "none"): (50.0, 5.0), ("scratch", "jpeg"): (40.0, 30.0), ("scratch", "blur"): (40.0, 39.0),
              ("ft", "none"): (80.0, 60.0)}
    for (victim, defence), (clean, em) in values.items():
        for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
            for method, value in (("clean", clean), ("em", em)):
                rows.append({"dataset": "d", "method": method, "apply": "none" if method == "clean" else "both",
                             "surrogate": "none" if method == "clean" else "rn", "victim": victim,
                             "defence": defence, "seed": seed, "t2i_r1": value + jitter,
                             "method_params": json.dumps({"kind": "em"} if method == "em" else {})})
    agg = aggregate(_every_metric_from_t2i(rows))
    lines = defence_table(agg)
    scratch = lines[lines.index(next(x for x in lines if "victim scratch" in x)):]
    assert scratch[2] == "| defence | clean | em (rn) |"
    assert scratch[4] == "| none | 50.0 ± 1.0 | 5.0 ± 1.0 (90%) |"  # (50 - 5) / (50 - 0)
    assert scratch[5] == "| blur | 40.0 ± 1.0 | 39.0 ± 1.0 (≈ clean) |"  # 1 point apart, sd 1: no difference
    assert scratch[6] == "| jpeg | 40.0 ± 1.0 | 30.0 ± 1.0 (25%) |"
    ft = lines[lines.index(next(x for x in lines if "victim ft" in x)):]
    assert ft[4] == "| none | 80.0 ± 1.0 | 60.0 ± 1.0 (25%) |" and ft[6] == "| jpeg |  |  |"
    page = defence_table_html(agg)
    assert page.count("<table") == 2 and "retained 25%" in page and "victim ft" in page
    assert page.count("≈ clean</small>") == 1


def test_a_grid_near_chance_at_r1_reads_the_protection_retained_at_the_metric_it_names(tmp_path):
    """A small CPU victim of real photos sits < 1 point above chance at R@1, where retained is undefined; the
    grid's `report.metric` (and `unlearnable table --metric`) reads it at R@10 in every table and the report."""
    from unlearnable.cli import main
    from unlearnable.report.mdtable import markdown_table

    rows = []
    for seed, jitter in enumerate((-0.5, 0.0, 0.5)):
        for method, r1, r10 in (("clean", 1.0, 16.0), ("mem3", 0.3, 2.0)):
            for defence in ("none", "scraper"):
                rows.append({"dataset": "real", "method": method, "apply": "none" if method == "clean" else "both",
                             "surrogate": "none" if method == "clean" else "rn", "victim": "rn", "seed": seed,
                             "defence": defence, "t2i_r1": r1 + jitter / 5, "t2i_r10": r10 + jitter,
                             "method_params": json.dumps({"kind": "mem"} if method == "mem3" else {})})
    df = pd.DataFrame(rows)
    for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r5", "rsum", "i2t_medr", "t2i_medr"):
        df[c] = df["t2i_r1"]
    for c, chance in (("i2t_r1", 0.1), ("i2t_r5", 0.5), ("i2t_r10", 1.0), ("t2i_r1", 0.1), ("t2i_r5", 0.5),
                      ("t2i_r10", 1.0), ("rsum", 3.2)):
        df[f"chance_{c}"] = chance
    at_r1 = markdown_table(df)
    assert "victim rn (t2i R@1;" in at_r1 and "| none | 1.0 ± 0.1 | 0.3 ± 0.1 (–) |" in at_r1  # undefined
    at_r10 = markdown_table(df, "t2i_r10")
    assert "victim rn (t2i R@10;" in at_r10
    assert "| none | 16.0 ± 0.5 | 2.0 ± 0.5 (93%) |" in at_r10  # (16 - 2) / (16 - 1)
    summary = tmp_path / "summary.parquet"
    df.to_parquet(summary)
    assert main(["table", "--metric", "t2i_r10", str(summary)]) == 0
    write_report(df, tmp_path / "report", [], [], [], {"config": {}, "versions": {}}, "t2i_r10")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "retained 93%" in page and "t2i R@10 on clean test data" in page


def test_variants_table_heatmap_and_visibility_plot_put_visibility_next_to_efficacy():
    from unlearnable.report.html import variants_table_html
    from unlearnable.report.mdtable import variants_markdown
    from unlearnable.report.plots import retained_heatmap, visibility_vs_retained
    from unlearnable.report.stats import variant_params, variants_table

    rows = []
    for seed in (0, 1, 2):
        for defence, clean, lf, px in (("none", 50.0, 5.0, 4.0), ("scraper", 40.0, 15.0, 39.5)):
            for method, value, psnr, params in (("clean", clean, np.nan, {}),
                                                ("lf8", lf, 30.0, {"kind": "strong_em", "noise_block": 8}),
                                                ("px", px, 34.0, {"kind": "strong_em", "eps": 16})):
                rows.append({"dataset": "d", "method": method, "apply": "none" if method == "clean" else "both",
                             "surrogate": "none" if method == "clean" else "rn", "victim": "scratch",
                             "defence": defence, "seed": seed, "t2i_r1": value + seed - 1, "psnr": psnr,
                             "ssim": 0.9, "mean_shift_max": 1.5, "method_params": json.dumps(params)})
    every = aggregate(_every_metric_from_t2i(rows))
    v = variants_table(every).set_index("protection")
    lf8, px = "strong_em · lf8 (rn)", "strong_em · px (rn)"  # by kind, with the grid's name beside it
    assert v.loc[lf8, "settings"] == "strong_em noise_block 8" and v.loc[lf8, "psnr"] == 30.0
    short = {"kind": "strong_em", "noise_block": 8, "rounds": 5, "pgd_steps": 8, "eot": [{"kind": "scraper"}]}
    assert variant_params(json.dumps(short, sort_keys=True)) == ("strong_em noise_block 8, pgd_steps 8, rounds 5, "
                                                                 "eot scraper")  # told apart from its long schedule
    assert v.loc[lf8, "scratch / scraper"] == "62%"  # (40 - 15) / 40
    assert v.loc[px, "scratch / scraper"] == "≈ clean" and v.loc[px, "scratch / none"] == "92%"
    md = variants_markdown(every)
    assert "| strong_em · lf8 (rn) | strong_em noise_block 8 | 30.0 | 0.900 | 1.5 | 90% | 62% |" in md
    assert "62%" in variants_table_html(every)
    assert retained_heatmap(every)[:4] == b"\x89PNG" and visibility_vs_retained(every)[:4] == b"\x89PNG"
    df = _every_metric_from_t2i(rows)
    undefended = aggregate(df[df.defence == "none"])
    assert retained_heatmap(undefended) is None and visibility_vs_retained(undefended) is None


def test_the_heatmap_row_labels_touch_no_other_panel_or_colour_bar():
    """Two victims, long protection names: no tick label of one panel overlaps another panel or a colour bar
    (side by side, the right panel's row labels ran into the left panel's colour bar)."""
    from unlearnable.report.plots import retained_heatmap_figure

    rows = []
    for victim in ("scratch", "finetuned"):
        for seed in (0, 1, 2):
            for defence, clean in (("none", 50.0), ("scraper", 40.0), ("jpeg75", 45.0)):
                for method in ("clean", "robust_em_with_a_long_name", "strong_em_low_frequency_8"):
                    protected = method != "clean"
                    rows.append({"dataset": "flickr8k", "method": method, "apply": "both" if protected else "none",
                                 "surrogate": "small-rn-64" if protected else "none", "victim": victim,
                                 "defence": defence, "seed": seed, "t2i_r1": (5.0 if protected else clean) + seed,
                                 "method_params": json.dumps({"kind": "robust_em"} if protected else {})})
    fig = retained_heatmap_figure(aggregate(_every_metric_from_t2i(rows)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
    for i, ax in enumerate(fig.axes[:2]):
        labels = [t.get_window_extent(renderer) for t in ax.get_yticklabels() + ax.get_xticklabels() if t.get_text()]
        assert labels
        for j, other in enumerate(boxes):
            if j != i:
                assert not any(lab.overlaps(other) for lab in labels), (i, j)
    assert len(fig.axes) == 3  # two panels and their one colour bar


def test_runs_table_finds_each_run_by_its_whole_cell_defence_included():
    """Two runs of one cell, undefended and under jpeg75: each row shows its own training run, not the other's."""
    from unlearnable.report.html import runs_table_html

    summary = _summary()
    summary = summary[(summary["method"] == "mem3") & (summary["surrogate"] == "vit") & (summary["victim"] == "vit")
                      & (summary["seed"] == 0)]
    summary = pd.concat([summary.assign(defence="none"), summary.assign(defence="jpeg75")], ignore_index=True)
    cell = {"dataset": "d", "method": "mem3", "apply": "both", "surrogate": "vit", "victim": "vit", "seed": 0}
    records = [{"cell": {**cell, "defence": d}, "seed": 0, "seconds": s, "mlflow_run_id": f"train-{d}",
                "mlflow_parent_run_id": f"cell-{d}"} for d, s in (("none", 11.0), ("jpeg75", 22.0))]
    rows = re.findall(r"<tr>(.*?)</tr>", runs_table_html(summary, records, []), flags=re.S)  # body rows
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    assert [[c for c in row if c.startswith(("train-", "cell-"))] for row in cells] == [
        ["cell-none", "train-none"], ["cell-jpeg75", "train-jpeg75"]]
    assert [row[4] for row in cells] == ["11", "22"]  # train seconds
