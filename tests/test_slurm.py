"""The grid on a real single-node SLURM cluster (Debian's slurmctld/slurmd/munge) through profiles/slurm."""
import json
import os
import shutil
import subprocess

import pytest
import yaml
from wf import REPO, SNAKEMAKE, TINY

GPU_RULES = {"protect", "train_clean", "retrain"}
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not shutil.which("slurmctld") or not shutil.which("munged") or os.geteuid() != 0:
        pytest.skip("needs root and Debian's slurmctld, slurmd and munge (.ci/run installs them)")
    state = tmp_path_factory.mktemp("slurm-state")
    script = str(REPO / "tests" / "slurm" / "cluster.sh")
    subprocess.run([script, "start", str(state)], check=True, timeout=180, capture_output=True)
    yield state
    subprocess.run([script, "stop", str(state)], timeout=60, capture_output=True)


def _jobs() -> list[dict]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if fields.get("Comment", "").startswith("rule_"):
            jobs.append(fields)
    return jobs


def test_grid_runs_on_slurm_with_gpu_requests_and_matches_a_local_run(cluster, finished, tmp_path):
    before = {j["JobId"] for j in _jobs()}
    wd = tmp_path / "wd"
    wd.mkdir()
    # a loader worker beside the torch thread: the training jobs' sbatch must ask for both CPUs (threads_per_job
    # + train.workers), whatever --cores says; workers gather batches in the order drawn, so numbers stay equal
    config = {**TINY, "threads_per_job": 1, "train": {**TINY["train"], "workers": 1}}
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(wd),
                          "--workflow-profile", str(REPO / "profiles/slurm"), "--configfile", str(wd / "config.yaml"),
                          "--jobs", "4"], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    jobs = [j for j in _jobs() if j["JobId"] not in before]
    rules = {j["Comment"][len("rule_"):].split("_wildcards_")[0]: j for j in jobs}
    assert set(rules) >= GPU_RULES | {"generate", "manifest", "image_store", "publish"}
    assert all(j["JobState"] == "COMPLETED" for j in jobs)
    for j in jobs:
        rule = j["Comment"][len("rule_"):].split("_wildcards_")[0]
        if rule in GPU_RULES:
            assert j["Partition"] == "gpu" and "gpu:1" in j.get("TresPerJob", ""), j
            if rule != "protect":
                assert j["CPUs/Task"] == "2", j  # its torch thread and its loader worker
        else:
            assert j["Partition"] == "cpu" and "gpu" not in j.get("TresPerJob", "") + j["TRES"], j
    for run in ["clean/tiny-vit/seed0", "retrain/mem/both/tiny-vit/tiny-vit/seed0"]:
        on_slurm = json.loads((wd / "results/shapes" / run / "metrics.json").read_text())["metrics"]
        local = json.loads((finished / "results/shapes" / run / "metrics.json").read_text())["metrics"]
        assert on_slurm == local, run
    assert (wd / "results/report/index.html").is_file()
