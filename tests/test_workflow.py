"""End-to-end runs of the Snakemake workflow on a tiny config, in a temporary working directory."""
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from wf import EFFICACY, PROTECTION, REPO, SNAKEMAKE, TINY, in_second_pass, snakemake


@pytest.mark.slow
def test_end_to_end_outputs(finished):
    summary = pd.read_parquet(finished / "results" / "summary.parquet")
    assert sorted(summary["method"]) == ["clean", "mem"]
    assert json.loads((finished / PROTECTION / "protection.json").read_text())["config"]["rounds"] == 4
    published = finished / "results/shapes/published/mem/both/tiny-vit/seed0"
    assert json.loads((published / "export.json").read_text())["trigger_roundtrip_rate"] == 1.0
    assert not (finished / (PROTECTION + ".work")).exists()  # checkpoints are removed once complete
    for col in ["dataset", "method", "surrogate", "victim", "seed", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1",
                "t2i_r5", "t2i_r10", "i2t_medr", "t2i_medr", "rsum", "chance_t2i_r1", "chance_i2t_r1"]:
        assert col in summary.columns, col
    row = summary[summary["method"] == "clean"].iloc[0]
    assert row["chance_t2i_r1"] == pytest.approx(100 / 30)
    assert set(summary["precision"]) == {"fp32"}  # the default on the CPU; `precision: bf16` switches it
    metrics = json.loads((finished / "results/shapes/clean/tiny-vit/seed0/metrics.json").read_text())
    assert metrics["seed"] == 0 and "torch" in metrics["versions"] and metrics["train_config"]["epochs"] == 2
    html = (finished / "results" / "report" / "index.html").read_text()
    assert "clean" in html and "data:image/png;base64" in html
    assert html.count("<figure>") == 3 and "published:" in html  # the gallery: 3 samples of the one protection
    assert (finished / "results/report/transfer_matrix.png").read_bytes()[:4] == b"\x89PNG"  # a note here
    for log in ["shapes.log", "shapes/data/manifest.log", "shapes/clean/tiny-vit/seed0.log"]:
        assert (finished / "results" / "logs" / log).stat().st_size > 0


@pytest.mark.slow
def test_mlflow_has_train_and_eval_runs(finished):
    import mlflow

    tracking = json.loads((finished / "results" / "tracking.json").read_text())
    mlflow.set_tracking_uri(tracking["uri"])
    runs = mlflow.search_runs(experiment_names=["unlearnable"])
    assert set(runs["tags.stage"]) == {"cell", "train", "evaluate", "protect", "publish"}
    # one parent run per grid cell, every axis a tag; its steps nested under it; shared steps linked
    cells = runs[runs["tags.stage"] == "cell"]
    assert sorted(cells["tags.method"]) == ["clean", "mem"] and set(cells["tags.victim"]) == {"tiny-vit"}
    mem = cells[cells["tags.method"] == "mem"].iloc[0]
    assert mem["tags.token_num"] == "3" and mem["tags.kind"] == "mem" and mem["tags.seed"] == "0"
    nested = runs[runs["tags.mlflow.parentRunId"] == mem["run_id"]]
    assert sorted(nested["tags.stage"]) == ["evaluate", "train"]
    assert mem["metrics.t2i_r1"] == nested[nested["tags.stage"] == "evaluate"]["metrics.t2i_r1"].iloc[0]
    protect_run = runs[runs["tags.stage"] == "protect"]["run_id"].iloc[0]
    assert mem["tags.protect_run_id"] == protect_run
    train = runs[(runs["tags.stage"] == "train") & (runs["tags.method"] == "clean")].iloc[0]
    assert train["params.seed"] == "0" and train["params.train.epochs"] == "2"
    client = mlflow.tracking.MlflowClient()
    assert len(client.get_metric_history(train["run_id"], "loss")) == 2
    ev = runs[runs["tags.stage"] == "evaluate"].iloc[0]
    assert ev["metrics.t2i_r1"] >= 0
    protect = runs[runs["tags.stage"] == "protect"].iloc[0]
    assert protect["params.protect.rounds"] == "4"
    assert len(client.get_metric_history(protect["run_id"], "surrogate_loss")) == 4



def _kill_protect_mid_round(proc: subprocess.Popen, workdir: Path) -> None:
    """SIGKILL the protect job once round 1 is committed and round 2's pass has started writing."""
    import psutil

    work = workdir / (PROTECTION + ".work")
    deadline = time.time() + 600
    while not in_second_pass(work):
        assert proc.poll() is None and time.time() < deadline, "workflow ended before the protect job was seen"
        time.sleep(0.02)
    def cmdline(p: psutil.Process) -> list[str]:
        try:
            return p.cmdline()
        except psutil.Error:  # a short-lived child that already exited (zombie) or vanished
            return []

    victims = [p for p in psutil.Process(proc.pid).children(recursive=True)
               if any("protect" in part for part in cmdline(p))]
    assert victims
    for p in victims:
        p.send_signal(signal.SIGKILL)
    proc.wait(timeout=600)


@pytest.mark.slow
def test_killed_protect_job_resumes_to_identical_bytes_and_metrics(finished, tmp_path):
    wd = tmp_path / "again"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(wd), "--configfile",
           str(wd / "config.yaml"), "--cores", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_protect_mid_round(proc, wd)
    assert proc.returncode != 0
    state = torch.load(wd / (PROTECTION + ".work") / "state.pt", weights_only=True)
    assert state["round"] == 1
    res = snakemake(wd, TINY)  # the user's plain re-run
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ["noise.npy", "triggers.npy"]:
        assert (wd / PROTECTION / name).read_bytes() == (finished / PROTECTION / name).read_bytes(), name
    for run in ["clean/tiny-vit/seed0", "retrain/mem/both/tiny-vit/tiny-vit/seed0"]:
        a = json.loads((finished / "results/shapes" / run / "metrics.json").read_text())["metrics"]
        b = json.loads((wd / "results/shapes" / run / "metrics.json").read_text())["metrics"]
        assert a == b, run


@pytest.mark.slow
def test_the_owners_command_and_the_workflow_publish_the_same_bytes(finished, tmp_path):
    """One road through the stages: the training photos of the workflow's dataset, protected by the owner's
    command with the grid's method settings and seed, publish the same files, byte for byte."""
    from unlearnable.cli import main
    from unlearnable.data.folders import PublishedDir

    shapes, published = finished / "resources/shapes", finished / "results/shapes/published/mem/both/tiny-vit/seed0"
    manifest = pd.read_parquet(finished / "results/shapes/data/manifest.parquet")
    train = manifest[manifest["split"] == "train"]
    owner = tmp_path / "photos"
    for rel in train["image_path"].unique():
        (owner / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shapes / rel, owner / rel)
    captions = pd.read_csv(shapes / "captions.csv")
    captions[captions.iloc[:, 0].isin(set(train["image_path"].str.removeprefix("images/")))].to_csv(
        owner / "captions.csv", index=False)
    method = TINY["methods"]["mem"]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in method.items() if k != "kind"]
    assert main(["protect", str(owner), str(tmp_path / "out"), "--method", method["kind"], *flags,
                 "--model", "tiny-vit", "--seed", "0", "--device", "cpu", "--threads", "1", "--size", "model",
                 "--no-progress"]) == 0
    ours = tmp_path / "out" / "published"
    files = sorted(p.relative_to(published) for p in published.rglob("*")
                   if p.is_file() and p.name != ".snakemake_timestamp")  # Snakemake's mark on a folder output
    assert files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    differ = [str(f) for f in files if f.name != PublishedDir.RECORD
              and (published / f).read_bytes() != (ours / f).read_bytes()]
    assert len(files) > len(train["image_id"].unique()) and differ == []
    provenance = ("mlflow_run_id", "protect_mlflow_run_id")
    a, b = (({k: v for k, v in PublishedDir(d).record().items() if k not in provenance}) for d in (published, ours))
    assert a == b


def test_dry_run_lists_the_dag(tmp_path):
    res = snakemake(tmp_path, TINY, "-n")
    assert res.returncode == 0, res.stderr
    for rule in ["generate", "manifest", "image_store", "tracking_store", "train_clean", "protect",
                 "publish", "retrain", "summary", "report"]:
        assert rule in res.stdout


def test_bad_config_is_one_line(tmp_path):
    cfg = json.loads(json.dumps(TINY))
    cfg["train"]["epoch"] = 3
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines()
             if ln.strip() and not ln.startswith("Using workflow specific profile")]
    assert len(lines) == 1 and lines[0].startswith("error: config: key 'train.epoch': unknown key (allowed here:")
    assert not (tmp_path / "results").exists()


def _break(kind: str, root: Path) -> str:
    if kind == "missing":
        (root / "images" / "shape_000007.png").unlink()
        return "shape_000007.png: image file missing"
    if kind == "undecodable":
        (root / "images" / "shape_000007.png").write_bytes(b"\x89PNG garbage")
        return "shape_000007.png: cannot decode image"
    lines = (root / "captions.csv").read_text().splitlines()
    lines[4] = lines[4].split(",")[0] + ","
    (root / "captions.csv").write_text("\n".join(lines) + "\n")
    return "captions.csv: row 5: empty caption"


@pytest.mark.parametrize("kind", ["missing", "undecodable", "empty_caption"])
def test_bad_data_stops_with_one_line_and_no_output(kind, shapes_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    expected = _break(kind, root)
    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"]["shapes"] = {"source": {"kind": "local", "path": str(root)}, "split": {"val": 5, "test": 10}}
    res = snakemake(tmp_path / "wd", cfg, "--until", "manifest")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], res.stderr[-2000:]
    log = (tmp_path / "wd/results/logs/shapes/data/manifest.log").read_text()
    assert expected in log and "Traceback" not in log
    assert not list((tmp_path / "wd" / "results").glob("shapes/data/*"))


@pytest.mark.slow
def test_published_run_is_logged_with_roundtrip_rate(finished):
    import mlflow

    tracking = json.loads((finished / "results" / "tracking.json").read_text())
    mlflow.set_tracking_uri(tracking["uri"])
    runs = mlflow.search_runs(experiment_names=["unlearnable"])
    pub = runs[runs["tags.stage"] == "publish"].iloc[0]
    assert pub["metrics.trigger_roundtrip_rate"] == 1.0 and pub["tags.apply"] == "both"


@pytest.mark.slow
def test_coco_layout_with_real_photos_runs_the_whole_dag_from_config_alone(tmp_path):
    import layout_builders as lb

    root = lb.coco_from_photos(tmp_path / "my-coco-copy")
    cfg = json.loads(json.dumps(TINY))
    cfg["datasets"] = {"mycoco": {"source": {"kind": "local", "path": str(root)},
                                  "split": {"kind": "random", "val": 4, "test": 12, "seed": 0}}}
    cfg["grid"]["datasets"] = ["mycoco"]
    wd = tmp_path / "wd"
    res = snakemake(wd, cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = pd.read_parquet(wd / "results/summary.parquet")
    assert sorted(summary["method"]) == ["clean", "mem"] and set(summary["dataset"]) == {"mycoco"}
    assert summary["chance_t2i_r1"].tolist() == pytest.approx([100 / 12] * 2)
    manifest = pd.read_parquet(wd / "results/mycoco/data/manifest.parquet")
    assert manifest["image_id"].nunique() == 48 and manifest["image_path"].str.startswith("coco2017/").all()
    assert set(manifest["image_path"].str.split("/").str[1]) == {"train2017", "val2017"}
    published = wd / "results/mycoco/published/mem/both/tiny-vit/seed0"
    assert len(list((published / "images").glob("*.png"))) == 32
    assert "mycoco" in (wd / "results/report/index.html").read_text()


@pytest.mark.slow
def test_mem_protects_and_random_noise_does_not(tmp_path):
    """The README's claims on a small shapes run: MEM-3 at most halves clean text->image R@1 (here it does
    far more), random noise of the same budget stays within 10 points of clean. Fails if MEM is replaced by
    random noise, or if the protection stops being applied."""
    res = snakemake(tmp_path, EFFICACY)
    assert res.returncode == 0, res.stderr[-3000:]
    s = pd.read_parquet(tmp_path / "results" / "summary.parquet").set_index("method")["t2i_r1"]
    chance = pd.read_parquet(tmp_path / "results" / "summary.parquet")["chance_t2i_r1"].iloc[0]
    assert s["clean"] > 10 * chance  # the clean CLIP learned the data: the comparison means something
    assert s["mem3"] <= 0.5 * s["clean"], s.to_dict()
    assert abs(s["random_noise"] - s["clean"]) <= 10, s.to_dict()


@pytest.mark.parametrize("grid", ["shapes-3seeds", "bf16", "shapes-full", "shapes-reference-schedule", "transfer",
                                  "noise-only", "defences", "robust", "robust+robust-variants"])
def test_shipped_grid_configs_plan(grid, tmp_path):
    files = [str(REPO / "config" / "grids" / f"{g}.yaml") for g in grid.split("+")]
    cmd = [SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path), "--configfile",
           str(REPO / "config" / "config.yaml"), *files, "-n", "--cores", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    # the variants add 3 protections x 3 seeds (EOT at strong_em's schedule, squares per image, colour16 made
    # with the pretrained surrogate), each trained by both victims, undefended and under scraper
    models = {"shapes-3seeds": 12, "bf16": 12, "shapes-full": 24, "noise-only": 36, "defences": 504, "robust": 156,
              "robust+robust-variants": 192}
    counts = {# 6 protections x 14 defences x 2 victims x 3 seeds; each protection made once per seed and
              # defended 12 times (augment changes no file); the clean split defended once per defence; the
              # fine-tuned victim's pretraining run is trained too, but is no cell
              "defences": {"protect": 12, "defend_published": 180, "defend_clean": 12, "train_clean": 7,
                           "train_clean_defended": 78, "retrain": 30, "retrain_defended": 390},
              # 12 protections (2 methods made with both surrogates) x 3 seeds, each defended once (scraper);
              # the pretrained surrogate's checkpoint is the fine-tuned victim's, trained once
              "robust": {"protect": 36, "defend_published": 36, "defend_clean": 1, "train_clean": 7,
                         "train_clean_defended": 6, "retrain": 72, "retrain_defended": 72}}
    counts["robust+robust-variants"] = {"protect": 45, "retrain": 90, "retrain_defended": 90}
    for rule, n in counts.get(grid, {}).items():
        assert re.search(rf"^{rule}\s+{n}$", res.stdout, re.M), (rule, res.stdout[-1500:])
    summary = next(b for b in res.stdout.split("\n\n") if re.search(r"^rule summary:", b, re.M))
    evaluated = re.search(r"^\s+input: (.*)$", summary, re.M).group(1).split(", ")
    assert all(f.endswith("/metrics.parquet") for f in evaluated)
    if grid in models:
        assert len(evaluated) == models[grid], grid


def test_the_robustness_variants_repeat_every_run_of_the_robustness_grid():
    """robust-variants.yaml replaces the runs list: it must keep every run of robust.yaml, or a run with both
    files would leave cells out of the summary that docs/results.md reads."""
    base, variants = (yaml.safe_load((REPO / "config" / "grids" / f).read_text())["grid"]["runs"]
                      for f in ("robust.yaml", "robust-variants.yaml"))

    def cells(runs):
        return {(r["method"], s) for r in runs for s in r.get("surrogates", ["tiny-rn"])}

    assert cells(base) < cells(variants)


def test_cpu_bf16_switch_runs_the_grid_under_autocast_and_records_it(tmp_path):
    """`precision: bf16` runs protection, training and evaluation under bf16 autocast on the CPU (the GPU's
    numerics, in CI); every record and summary row says bf16, where the default run says fp32."""
    cfg = {**TINY, "precision": "bf16", "train": {"epochs": 1, "batch_size": 32}}
    res = snakemake(tmp_path, cfg)
    assert res.returncode == 0, res.stderr[-3000:]
    results = tmp_path / "results"
    summary = pd.read_parquet(results / "summary.parquet")
    assert set(summary["precision"]) == {"bf16"} and len(summary) == 2
    protection = json.loads((results / "shapes/protect/mem/tiny-vit/seed0/protection.json").read_text())
    assert protection["versions"]["precision"] == "bf16"
    assert json.loads((results / "shapes/clean/tiny-vit/seed0/train.json").read_text())["train"]["precision"] == "bf16"
