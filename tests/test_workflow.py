"""End-to-end runs of the Snakemake workflow on a tiny config, in a temporary working directory."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY = {
    "device": "cpu",
    "datasets": {"shapes": {"source": {"kind": "shapes", "n_images": 120, "image_size": 32, "seed": 1},
                            "split": {"val": 10, "test": 30, "seed": 0}}},
    "models": {"tiny-vit": {"arch": "tiny-vit"}},
    "train": {"epochs": 2, "batch_size": 32},
    "grid": {"datasets": ["shapes"], "victims": ["tiny-vit"], "seeds": [0], "runs": [{"method": "clean"}]},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir), "--configfile",
           str(workdir / "config.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf") / "run"
    res = snakemake(wd, TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    return wd


@pytest.mark.slow
def test_end_to_end_outputs(finished):
    summary = pd.read_parquet(finished / "results" / "summary.parquet")
    assert len(summary) == 1
    for col in ["dataset", "method", "surrogate", "victim", "seed", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1",
                "t2i_r5", "t2i_r10", "i2t_medr", "t2i_medr", "rsum", "chance_t2i_r1", "chance_i2t_r1"]:
        assert col in summary.columns, col
    row = summary.iloc[0]
    assert row["chance_t2i_r1"] == pytest.approx(100 / 30)
    metrics = json.loads((finished / "results/shapes/clean/tiny-vit/seed0/metrics.json").read_text())
    assert metrics["seed"] == 0 and "torch" in metrics["versions"] and metrics["train_config"]["epochs"] == 2
    html = (finished / "results" / "report" / "index.html").read_text()
    assert "clean" in html and "data:image/png;base64" in html
    for log in ["generate.log", "manifest.log", "clean/tiny-vit/seed0/train.log"]:
        assert (finished / "results" / "logs" / "shapes" / log).stat().st_size > 0


@pytest.mark.slow
def test_mlflow_has_train_and_eval_runs(finished):
    import mlflow

    tracking = json.loads((finished / "results" / "tracking.json").read_text())
    mlflow.set_tracking_uri(tracking["uri"])
    runs = mlflow.search_runs(experiment_names=[tracking["experiment"]])
    assert set(runs["tags.stage"]) == {"train", "evaluate"}
    train = runs[runs["tags.stage"] == "train"].iloc[0]
    assert train["params.seed"] == "0" and train["params.train.epochs"] == "2"
    client = mlflow.tracking.MlflowClient()
    assert len(client.get_metric_history(train["run_id"], "loss")) == 2
    ev = runs[runs["tags.stage"] == "evaluate"].iloc[0]
    assert ev["metrics.t2i_r1"] >= 0


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(finished, tmp_path):
    res = snakemake(tmp_path / "again", TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((finished / "results/shapes/clean/tiny-vit/seed0/metrics.json").read_text())["metrics"]
    b = json.loads((tmp_path / "again/results/shapes/clean/tiny-vit/seed0/metrics.json").read_text())["metrics"]
    assert a == b


def test_dry_run_lists_the_dag(tmp_path):
    res = snakemake(tmp_path, TINY, "-n")
    assert res.returncode == 0, res.stderr
    for rule in ["generate_shapes", "manifest", "image_store", "tracking_store", "train_clean", "evaluate",
                 "summary", "report"]:
        assert rule in res.stdout


def test_bad_config_is_one_line(tmp_path):
    cfg = json.loads(json.dumps(TINY))
    cfg["train"]["epoch"] = 3
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode != 0
    lines = [l for l in res.stderr.splitlines() if l.strip() and not l.startswith("Using workflow specific profile")]
    assert lines == ["error: config: key 'train': unknown key ('epoch' was unexpected)"]
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
    errors = [l for l in res.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], res.stderr[-2000:]
    log = (tmp_path / "wd/results/logs/shapes/manifest.log").read_text()
    assert expected in log and "Traceback" not in log
    assert not list((tmp_path / "wd" / "results").glob("shapes/data/*"))
