import re

import numpy as np

from unlearnable.workflow.jobrunner import run_job


def test_every_job_logs_its_wall_time_and_peak_memory(tmp_path):
    log = tmp_path / "job.log"
    run_job(str(log), 1, lambda: np.ones(64 * 2 ** 20 // 8).sum())  # touches 64 MiB
    m = re.search(r"usage: wall ([\d.]+) s, peak RSS (\d+) MiB", log.read_text())
    assert m and float(m.group(1)) >= 0 and int(m.group(2)) >= 64


HEAVY = ("torch", "open_clip", "torchvision", "mlflow", "matplotlib")


def _run_in_fresh_python(tmp_path, body: str) -> dict:
    """Run a job the way Snakemake does, in a new interpreter; it prints a JSON line we read back."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text("import json, sys\nfrom unlearnable.workflow.jobrunner import run_job\n" + body)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_defence_job_imports_no_torch_unless_it_counts_tokens(shapes_root, tmp_path):
    """Start-up is a third of a defences grid: a job that only re-encodes images must not pay for torch and
    open_clip. strip_trigger counts CLIP tokens and does import them (the check can see an import)."""
    from unlearnable.data import manifest as mf
    from unlearnable.data.image_store import build_image_store
    from unlearnable.data.sources import read_dataset
    from unlearnable.data.splits import SplitConfig, assign_split

    rows, _ = read_dataset(shapes_root)
    table = mf.build_manifest(rows, assign_split(rows["image_id"].tolist(), SplitConfig(val=0, test=10)))
    mf.write_manifest(table, tmp_path / "manifest.parquet")
    build_image_store(table.to_pandas(), shapes_root, tmp_path / "store.npy", 32)
    seen = {}
    for name, spec in (("jpeg75", {"kind": "jpeg", "quality": 75}), ("strip3", {"kind": "strip_trigger", "k": 3})):
        seen[name] = _run_in_fresh_python(tmp_path, f"""
from unlearnable.workflow.jobs import defend_job
out = {str(tmp_path / name)!r}
run_job(None, 1, lambda: defend_job({str(tmp_path / 'manifest.parquet')!r}, {str(tmp_path / 'store.npy')!r},
                                    {name!r}, {spec!r}, out, 1))
import os
print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules],
                   "written": os.path.isfile(os.path.join(out, "manifest.parquet"))}}))
""")
    assert seen["jpeg75"] == {"loaded": [], "written": True}
    assert seen["strip3"]["written"] and {"torch", "open_clip"} <= set(seen["strip3"]["loaded"])


def test_a_job_that_imports_torch_late_still_runs_on_its_threads(tmp_path):
    """Threads are set before torch is imported; a job's torch must still use exactly the threads it asked for
    (the numbers of a CPU run depend on them)."""
    got = _run_in_fresh_python(tmp_path, """
def fn():
    import torch
    fn.threads = torch.get_num_threads()
run_job(None, 1, fn)
import os
print(json.dumps({"threads": fn.threads, "omp_after": os.environ.get("OMP_NUM_THREADS")}))
""")
    assert got["threads"] == 1
    # the variable lasts only as long as the job: a process that goes on (pytest itself) and the programs it
    # starts keep their environment; `nproc` reads OMP_NUM_THREADS, and the SLURM test's node took 1 CPU from it
    assert got["omp_after"] is None
