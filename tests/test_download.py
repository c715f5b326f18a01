"""Kaggle downloads through the real `kaggle` client against a fake Kaggle API on localhost:80."""
import json
import os
import subprocess
from pathlib import Path

import layout_builders as lb
import pandas as pd
import pytest
from fake_kaggle import FakeKaggle
from wf import REPO, SNAKEMAKE

from unlearnable import DataError
from unlearnable.data.kaggle_source import CredentialsError, KaggleSource, download

USER, KEY = "tester", "k3y-value-that-must-never-leak-5a9f"
F8K = [f"{x}" for x in (REPO / "config/splits/flickr8k_test.txt").read_text().split()[:3]] + \
      (REPO / "config/splits/flickr8k_val.txt").read_text().split()[:2] + [f"{9000 + i}_x.jpg" for i in range(7)]
F30K = [f"{700 + i}.jpg" for i in range(12)]
COCO_TEST = [int(x) for x in (REPO / "config/splits/mscoco_test.txt").read_text().split()[:4]]
HANDLES = {"flickr8k": "adityajn105/flickr8k", "flickr30k": "hsankesara/flickr-image-dataset",
           "coco": "awsaf49/coco-2017-dataset"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("kaggle-src")
    return {"flickr8k": lb.flickr8k(base / "flickr8k", F8K),
            "flickr30k": lb.flickr30k(base / "flickr30k", F30K),
            "coco": lb.coco2017(base / "coco", COCO_TEST[:2] + list(range(1, 9)), COCO_TEST[2:])}


@pytest.fixture(scope="module")
def server(sources, tmp_path_factory):
    zips = tmp_path_factory.mktemp("kaggle-zips")
    archives = {HANDLES[name]: lb.zip_folder(root, zips / f"{name}.zip") for name, root in sources.items()}
    try:
        fake = FakeKaggle(archives, USER, KEY)
    except PermissionError:
        pytest.skip("the fake Kaggle API needs port 80 (KAGGLE_API_ENVIRONMENT=LOCALHOST); run as root")
    with fake:
        yield fake


def _env(tmp_path: Path, **creds: str) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    return {**env, "HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle"),
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "MLFLOW_DISABLE_TELEMETRY": "true", **creds}


def _config(sources: dict, kind: str) -> dict:
    def source(name):
        if kind == "local":
            return {"kind": "local", "path": str(sources[name])}
        return {"kind": "kaggle", "dataset": HANDLES[name], "expected_images": 12}

    return {
        "device": "cpu",
        "datasets": {
            "flickr8k": {"source": source("flickr8k"), "split": {"kind": "paper", "lists": "flickr8k"}},
            "flickr30k": {"source": source("flickr30k"), "split": {"kind": "random", "val": 2, "test": 3}},
            "coco": {"source": source("coco"), "split": {"kind": "paper", "lists": "mscoco", "val": 2}},
        },
        "models": {"tiny-vit": {"arch": "tiny-vit"}},
        "train": {"epochs": 1, "batch_size": 16},
        "grid": {"datasets": ["flickr8k"], "victims": ["tiny-vit"], "seeds": [0], "runs": [{"method": "clean"}]},
    }


def _snakemake(wd: Path, config: dict, env: dict, *targets: str) -> subprocess.CompletedProcess:
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "config.yaml").write_text(json.dumps(config))
    cmd = [SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(wd), "--cores", "2", *targets,
           "--configfile", str(wd / "config.yaml")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


MANIFESTS = [f"results/{d}/data/manifest.parquet" for d in HANDLES]


@pytest.fixture(scope="module")
def downloaded(server, sources, tmp_path_factory):
    wd = tmp_path_factory.mktemp("kaggle-run")
    env = _env(wd, KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY)
    res = _snakemake(wd, _config(sources, "kaggle"), env, *MANIFESTS,
                     "results/flickr8k/clean/tiny-vit/seed0/metrics.json", "results/report/index.html")
    assert res.returncode == 0, res.stderr[-3000:]
    return wd, res, env


@pytest.mark.slow
def test_download_rule_fetches_verifies_and_splits(downloaded, server):
    wd, _, _ = downloaded
    assert server.downloads() == 3
    for name, handle in HANDLES.items():
        marker = json.loads((wd / "resources" / name / ".unlearnable-download.json").read_text())
        assert marker["kaggle_dataset"] == handle and marker["images"] == 12
        assert not (wd / "resources" / f".{name}.download").exists()  # the zip is gone once verified
    f8k = pd.read_parquet(wd / MANIFESTS[0]).drop_duplicates("image_id").set_index("image_id")["split"]
    assert f8k.value_counts().to_dict() == {"train": 7, "test": 3, "val": 2}
    assert set(f8k[f8k == "test"].index) == {Path(n).stem for n in F8K[:3]}
    f30k = pd.read_parquet(wd / MANIFESTS[1])
    assert len(f30k) == 60 and f30k.drop_duplicates("image_id")["split"].value_counts().to_dict() == {
        "train": 7, "test": 3, "val": 2}
    quality = json.loads((wd / "results/flickr30k/data/quality.json").read_text())
    assert quality["repaired"] == {"repaired_row": 1}  # the known malformed Flickr30k row
    coco = pd.read_parquet(wd / MANIFESTS[2]).drop_duplicates("image_id").set_index("image_id")["split"]
    assert set(coco[coco == "test"].index) == {str(i) for i in COCO_TEST}
    assert (coco == "val").sum() == 2 and (coco == "train").sum() == 6


@pytest.mark.slow
def test_local_copies_give_identical_manifests(downloaded, sources, tmp_path):
    wd, _, env = downloaded
    res = _snakemake(tmp_path / "local", _config(sources, "local"), _env(tmp_path), *MANIFESTS)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "download" not in {ln.split()[-1] for ln in res.stdout.splitlines() if ln.startswith("rule ")}
    for m in MANIFESTS:
        assert pd.read_parquet(tmp_path / "local" / m).equals(pd.read_parquet(wd / m)), m


@pytest.mark.slow
def test_a_complete_download_is_not_fetched_again(downloaded, server):
    wd, _, _ = downloaded
    before = server.downloads()
    record = download(KaggleSource(HANDLES["coco"], expected_images=12), wd / "resources" / "coco", "coco")
    assert record["images"] == 12 and server.downloads() == before


@pytest.mark.slow
def test_the_key_never_reaches_logs_outputs_or_mlflow(downloaded):
    wd, res, _ = downloaded
    assert KEY not in res.stdout + res.stderr
    leaks = [p for p in wd.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaks == [] and (wd / "results/flickr8k/clean/tiny-vit/seed0/metrics.json").is_file()
    import mlflow

    tracking = json.loads((wd / "results/tracking.json").read_text())
    mlflow.set_tracking_uri(tracking["uri"])
    runs = mlflow.search_runs(experiment_names=["unlearnable"])
    assert len(runs) >= 2
    assert not any(KEY in str(v) for v in runs.to_numpy().ravel())


def test_no_credentials_is_one_help_line(server, sources, tmp_path):
    res = _snakemake(tmp_path / "wd", _config(sources, "kaggle"), _env(tmp_path), MANIFESTS[0])
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr[-2000:]
    assert "no Kaggle credentials found" in errors[0]
    for hint in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "kaggle.json", "kind: local"):
        assert hint in errors[0]
    log = (tmp_path / "wd/results/logs/flickr8k.log").read_text()
    assert "Traceback" not in res.stderr + log and errors[0] in log
    assert not (tmp_path / "wd/resources/flickr8k").exists()


def test_refused_credentials_are_named_without_the_key(server, sources, tmp_path, monkeypatch):
    for k, v in _env(tmp_path, KAGGLE_USERNAME=USER, KAGGLE_KEY="wrong-" + KEY).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(CredentialsError, match=r"Kaggle refused the credentials \(HTTP 401\)") as e:
        download(KaggleSource(HANDLES["flickr8k"], expected_images=12), tmp_path / "res" / "flickr8k", "flickr8k")
    assert KEY not in str(e.value) and not (tmp_path / "res" / "flickr8k").exists()


def test_interrupted_download_is_redone(server, sources, tmp_path, monkeypatch):
    for k, v in _env(tmp_path, KAGGLE_USERNAME=USER, KAGGLE_KEY=KEY).items():
        monkeypatch.setenv(k, v)
    res = tmp_path / "res"
    staging = res / ".flickr30k.download"
    staging.mkdir(parents=True)
    (staging / "flickr-image-dataset.zip").write_bytes(b"PK\x03\x04 half a zip")  # a download cut short
    (res / ".flickr30k.tmp-99999").mkdir()  # an extraction cut short
    (res / ".flickr30k.tmp-99999" / "results.csv").write_text("image_name| comment_number| comment\n")
    record = download(KaggleSource(HANDLES["flickr30k"], expected_images=12), res / "flickr30k", "flickr30k")
    assert record["images"] == 12 and (res / "flickr30k/flickr30k_images/results.csv").is_file()
    assert sorted(p.name for p in res.iterdir()) == ["flickr30k"]  # no partial leftovers
    with pytest.raises(DataError, match="incomplete download: 12 images found, 13 expected"):
        download(KaggleSource(HANDLES["flickr30k"], expected_images=13), res / "other", "other")
    assert not (res / "other").exists()
