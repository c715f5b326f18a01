"""The defence axis: every protection is made once and defended many times, and the clean baseline gets the
same defence, so that each drop is measured against clean data under that defence."""
import copy
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_grid import job_counts, jobs
from wf import PROTECTION, TINY, snakemake, validated

from unlearnable import ConfigError
from unlearnable.workflow.grid import cells, run_dir

DEFENDED = copy.deepcopy(TINY)
DEFENDED["defences"] = {"gray": {"kind": "grayscale"}, "aug": {"kind": "augment", "scale_min": 0.6},
                        "strip": {"kind": "strip_trigger", "k": 3}, "scraper": {"kind": "scraper"}}
DEFENDED["grid"]["defences"] = ["none", "gray", "aug", "strip", "scraper"]


def test_cells_cross_every_run_with_every_defence():
    cs = cells(validated(DEFENDED))
    assert len(cs) == 2 * 5
    assert {(c["method"], c["defence"]) for c in cs} == {(m, d) for m in ("clean", "mem")
                                                         for d in ("none", "gray", "aug", "strip", "scraper")}
    undefended = [c for c in cs if c["defence"] == "none"]
    assert {run_dir("results", c) for c in undefended} == {  # where they always were: old results reused
        "results/shapes/clean/tiny-vit/seed0", "results/shapes/retrain/mem/both/tiny-vit/tiny-vit/seed0"}
    assert "results/shapes/defended/gray/clean/tiny-vit/seed0" in {run_dir("results", c) for c in cs}


def test_a_run_may_take_a_subset_of_the_defences_and_only_one_of_the_grids():
    from unlearnable.workflow.configschema import check_references

    cfg = copy.deepcopy(DEFENDED)
    cfg["grid"]["runs"][1]["defences"] = ["none", "strip"]
    cs = cells(validated(cfg))
    assert {c["defence"] for c in cs if c["method"] == "mem"} == {"none", "strip"}
    assert {c["defence"] for c in cs if c["method"] == "clean"} == {"none", "gray", "aug", "strip", "scraper"}
    cfg["grid"]["runs"][1]["defences"] = ["none", "jpeg50"]
    with pytest.raises(ConfigError, match=r"grid.runs.1.defences.1.*'jpeg50' is not one of grid.defences"):
        check_references(cfg)


def test_plan_defends_each_folder_once_and_augments_without_files(tmp_path):
    res = snakemake(tmp_path / "wd", DEFENDED, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    counts = job_counts(res.stdout)
    assert {k: counts.get(k, 0) for k in ("protect", "publish", "defend_published", "defend_clean", "train_clean",
                                          "train_clean_defended", "retrain", "retrain_defended")} == {
        "protect": 1, "publish": 1, "defend_published": 3, "defend_clean": 3, "train_clean": 1,
        "train_clean_defended": 4, "retrain": 1, "retrain_defended": 4}  # 10 models, each evaluated by its job
    assert {j["wildcards"]["defence"] for j in jobs(res.stdout)
            if j["rule"].startswith("defend")} == {"gray", "strip", "scraper"}
    # a chain that ends in augmentation trains its victims with it, on its defended files
    trains = [b for b in res.stdout.split("\n\n") if "rule retrain_defended:" in b and "defended/scraper/" in b]
    assert trains and "defended/scraper/published/mem" in trains[0]


def test_the_rules_write_and_log_where_the_grid_says(tmp_path):
    """One owner of the results layout: every folder the planned jobs write (protections, published folders,
    defended copies, trained models) is where `grid` says it is, nothing else is planned, and every job's log
    is the place of what it writes, under results/logs (`grid.log_path`)."""
    from unlearnable.workflow.grid import log_path, protection_dirs, published_dirs

    cfg = copy.deepcopy(DEFENDED)
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    outputs, logs = {}, {}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", res.stdout):
        rule, out = re.search(r"^rule (\w+):", block, re.M), re.search(r"^\s+output: (.*)$", block, re.M)
        log = re.search(r"^\s+log: (.*)$", block, re.M)
        if rule and out:
            outputs.setdefault(rule.group(1), set()).update(out.group(1).split(", "))
            first = out.group(1).split(", ")[0]
            written = first.rsplit("/", 1)[0] if first.endswith("/model.safetensors") else first  # a run folder
            logs[first] = (log and log.group(1), log_path("results", written, "resources")
                           if rule.group(1) in ("generate", "download") else log_path("results", written))
    assert len(logs) > 20 and {k: v for k, v in logs.items() if v[0] != v[1]} == {}
    assert len({v[0] for v in logs.values()}) == len(logs)  # one log per job
    results = "results"
    from unlearnable.workflow.grid import expand_trigger_lengths

    cfg = expand_trigger_lengths(validated(cfg))
    assert outputs["protect"] == set(protection_dirs(results, cfg))
    assert outputs["publish"] | outputs["defend_published"] == set(published_dirs(results, cfg))
    trained = {o.rsplit("/", 1)[0] for r in ("train_clean", "retrain", "train_clean_defended", "retrain_defended")
               for o in outputs.get(r, ()) if o.endswith("/metrics.parquet")}
    assert trained == {run_dir(results, c) for c in cells(cfg)}


def test_an_undefined_defence_is_named(tmp_path):
    bad = copy.deepcopy(DEFENDED)
    bad["grid"]["defences"] = ["none", "jpg75"]
    res = snakemake(tmp_path / "wd", bad, "-n")
    assert res.returncode != 0 and "grid.defences.1" in res.stderr and "'jpg75'" in res.stderr


@pytest.mark.slow
def test_defended_victims_reuse_the_protection_and_fill_the_defence_table(tmp_path):
    finished = tmp_path / "wd"  # its own run: the session's shared one must stay as the other tests expect it
    first = snakemake(finished, TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    plan = snakemake(finished, DEFENDED, "-n")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert not {"protect", "publish", "train_clean", "retrain"} & set(job_counts(plan.stdout))
    res = snakemake(finished, DEFENDED)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = pd.read_parquet(finished / "results/summary.parquet")
    assert sorted(zip(summary["method"], summary["defence"])) == sorted(
        (m, d) for m in ("clean", "mem") for d in ("none", "gray", "aug", "strip", "scraper"))
    gray = np.load(finished / "results/shapes/defended/gray/published/mem/both/tiny-vit/seed0/images.npy")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    published = pd.read_csv(finished / "results/shapes/published/mem/both/tiny-vit/seed0/captions.csv")
    stripped = pd.read_csv(finished / "results/shapes/defended/strip/published/mem/both/tiny-vit/seed0/captions.csv")
    original = pd.read_parquet(finished / "results/shapes/data/manifest.parquet").query("split == 'train'")
    assert len(stripped) == len(published) and (stripped["caption"] != published["caption"]).all()
    assert sorted(stripped["caption"]) == sorted(c.lower() for c in original["caption"])  # trigger gone, nothing else
    assert not (finished / "results/shapes/defended/aug").joinpath("published").exists()  # augmentation: no files
    html = (finished / "results/report/index.html").read_text()
    assert "Protection under defences" in html and "retained" in html
    summary = str(finished / "results/summary.parquet")
    table = subprocess.run([sys.executable, "-m", "unlearnable.cli", "table", summary],
                           capture_output=True, text=True)
    assert table.returncode == 0 and "Protection under defences" in table.stdout, table.stderr
    lines = table.stdout.splitlines()
    assert "| defence | clean | mem (tiny-vit) |" in lines and "%)" in table.stdout
    start = lines.index("| defence | clean | mem (tiny-vit) |") + 2
    rows = [line.split(" | ")[0] for line in lines[start:lines.index("", start)]]
    assert rows == ["| none", "| aug", "| gray", "| scraper", "| strip"]  # a row per defence, undefended first
    assert any(line.startswith("| mem (tiny-vit) | mem ") for line in lines)  # and the variants table
    assert (finished / PROTECTION).is_dir()
    # every MLflow run carries every axis of its cell as a tag, `defence: none` included
    import mlflow

    mlflow.set_tracking_uri(json.loads((finished / "results/tracking.json").read_text())["uri"])
    runs = mlflow.search_runs(experiment_names=["unlearnable"])
    axes = {"cell": CELL_AXES, "train": CELL_AXES, "evaluate": CELL_AXES, "protect": PROTECTION_AXES,
            "publish": PROTECTION_AXES + ("apply",)}  # one protection serves every `apply`
    assert set(runs["tags.stage"]) == set(axes)
    for stage, keys in axes.items():
        tags = runs[runs["tags.stage"] == stage][[f"tags.{k}" for k in keys]]
        assert tags.notna().all().all(), (stage, tags.isna().sum().to_dict())
    trained = runs[runs["tags.stage"] != "protect"].dropna(subset=["tags.defence"])
    assert set(trained["tags.defence"]) == {"none", "gray", "aug", "strip", "scraper"}


CELL_AXES = ("dataset", "method", "apply", "surrogate", "victim", "seed", "defence")
PROTECTION_AXES = ("dataset", "method", "surrogate", "seed")
FINETUNED = copy.deepcopy(TINY)
FINETUNED["datasets"]["pretrain"] = {"source": {"kind": "shapes", "n_images": 120, "image_size": 32, "seed": 9},
                                     "split": {"val": 0, "test": 10}}
FINETUNED["models"]["tiny-vit-ft"] = {"arch": "tiny-vit", "train": {"lr": 0.0002, "epochs": 1},
                                      "pretrained": {"dataset": "pretrain", "model": "tiny-vit", "seed": 0}}
FINETUNED["grid"]["victims"] = ["tiny-vit", "tiny-vit-ft"]


def test_finetuned_victims_start_from_a_clean_clip_trained_on_other_data(tmp_path):
    res = snakemake(tmp_path / "wd", FINETUNED, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    planned = jobs(res.stdout)
    trains = {(j["wildcards"]["dataset"], j["wildcards"]["victim"]) for j in planned if j["rule"] == "train_clean"}
    assert trains == {("shapes", "tiny-vit"), ("shapes", "tiny-vit-ft"), ("pretrain", "tiny-vit")}
    summary = next(b for b in res.stdout.split("\n\n") if "rule summary:" in b)
    cells = set(re.findall(r"/(shapes|pretrain)/clean/([\w-]+)/seed\d+/metrics\.parquet", summary))
    assert cells == {("shapes", "tiny-vit"), ("shapes", "tiny-vit-ft")}  # the pretraining run is an input, not a cell
    ft = [b for b in res.stdout.split("\n\n") if "rule train_clean:" in b and "shapes/clean/tiny-vit-ft" in b]
    assert ft and "results/pretrain/clean/tiny-vit/seed0/model.safetensors" in ft[0]


def test_a_pretrained_surrogate_waits_for_its_checkpoint(tmp_path):
    """The owner's threat model: the noise is made against the very CLIP the fine-tuning scraper starts from,
    so the plan trains that CLIP before the protection, and the protection job is told its weights."""
    cfg = copy.deepcopy(FINETUNED)
    cfg["grid"]["surrogates"] = ["tiny-vit-ft"]
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    block = next(b for b in res.stdout.split("\n\n") if "rule protect:" in b)
    assert "results/pretrain/clean/tiny-vit/seed0/model.safetensors" in block
    assert "shapes/protect/mem/tiny-vit-ft/seed0" in block
    order = [j["rule"] + ":" + j["wildcards"].get("dataset", "") for j in jobs(res.stdout)]
    assert order.index("train_clean:pretrain") < order.index("protect:shapes")


def test_an_ensemble_surrogate_waits_for_every_members_weights(tmp_path):
    cfg = copy.deepcopy(FINETUNED)
    cfg["models"]["ens"] = {"ensemble": ["tiny-vit", "tiny-vit-ft"]}
    cfg["methods"]["em"] = {"kind": "em", "rounds": 1, "surrogate_steps": 2, "pgd_steps": 1}
    cfg["grid"]["runs"] = [{"method": "clean"}, {"method": "em", "surrogates": ["ens"]}]
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    block = next(b for b in res.stdout.split("\n\n") if "rule protect:" in b)
    assert "results/pretrain/clean/tiny-vit/seed0/model.safetensors" in block and "protect/em/ens/seed0" in block
    cfg["grid"]["runs"] = [{"method": "clean"}, {"method": "mem", "surrogates": ["ens"]}]
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode != 0 and "'mem' searches its trigger by HotFlip" in res.stderr, res.stderr[-1000:]
    cfg["grid"]["runs"] = [{"method": "clean"}]
    cfg["grid"]["victims"] = ["ens"]
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode != 0 and "only a surrogate" in res.stderr, res.stderr[-1000:]


@pytest.mark.parametrize("change, message", [
    (lambda c: c["models"]["tiny-vit-ft"]["pretrained"].update(dataset="nope"), "pretrained.dataset'"),
    (lambda c: c["models"].update({"tiny-rn": {"arch": "tiny-rn"}}) or c["models"]["tiny-vit-ft"]["pretrained"]
     .update(model="tiny-rn"), "is a tiny-rn, not a tiny-vit"),
    (lambda c: c["defences"].update(bad={"kind": "chain", "steps": [{"kind": "jpeg", "sigma": 2}]}),
     "defences.bad.steps[0]"),
])
def test_bad_finetuning_configs_are_named(tmp_path, change, message):
    cfg = copy.deepcopy(FINETUNED)
    cfg.setdefault("defences", {})
    change(cfg)
    res = snakemake(tmp_path / "wd", cfg, "-n")
    assert res.returncode != 0 and message in res.stderr, res.stderr[-1500:]


def test_protection_retained_is_undefined_where_clean_data_teaches_nothing():
    from unlearnable.report.stats import percent, retained

    assert retained(44.0, 4.0, 0.5) == pytest.approx(40 / 43.5)
    assert retained(44.0, 44.0, 0.5) == 0.0
    assert retained(100 / 30 + 1e-9, 8.0, 100 / 30) != retained(100 / 30 + 1e-9, 8.0, 100 / 30)  # NaN
    assert percent(float("nan")) == "–" and percent(0.5) == "50%"
