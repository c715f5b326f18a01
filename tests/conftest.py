import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _a_share_of_the_cores():
    """Under pytest-xdist each worker's torch takes its share of the cores: two workers each running torch on
    every core oversubscribe the CPU and their threads wait on each other (a protection test took 6x its solo
    time). In this process only: the environment, which the programs a test starts inherit (and which `nproc`
    and the SLURM test's node read), is left as it is."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    yield


@pytest.fixture(autouse=True)
def _no_exported_tracking_uri():
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI, which the jobs prefer over their config: a test
    reading one store must not send every workflow started after it into that store."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A small shapes dataset written once per test session."""
    from unlearnable.data.shapes import ShapesConfig, write_shapes

    root = tmp_path_factory.mktemp("shapes") / "shapes"
    write_shapes(root, ShapesConfig(n_images=60, image_size=32, seed=3))
    return root


@pytest.fixture(scope="session")
def shapes_store(shapes_root, tmp_path_factory):
    """(manifest rows with 10 test images and the rest train, path of a 32 px image store)."""
    from unlearnable.data import manifest as mf
    from unlearnable.data.image_store import build_image_store
    from unlearnable.data.sources import read_dataset
    from unlearnable.data.splits import SplitConfig, assign_split

    rows, _ = read_dataset(shapes_root)
    split = assign_split(rows["image_id"].tolist(), SplitConfig(val=0, test=10))
    df = mf.build_manifest(rows, split).to_pandas()
    return df, build_image_store(df, shapes_root, tmp_path_factory.mktemp("store") / "s.npy", 32)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """The tiny grid (clean + MEM), run once per session with the local executor."""
    from wf import TINY, snakemake

    wd = tmp_path_factory.mktemp("wf") / "run"
    res = snakemake(wd, TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    return wd



def pytest_terminal_summary(terminalreporter):
    """Where the suite's time goes, by test file (setup, call and teardown summed): what to slim or split first
    when `make test` grows. With xdist, each file's time is spent on one worker (`--dist loadfile`)."""
    by_file: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for r in reports:
            if hasattr(r, "duration") and hasattr(r, "nodeid") and r.nodeid:
                name = r.nodeid.split("::")[0]
                by_file[name] = by_file.get(name, 0.0) + r.duration
    if by_file:
        terminalreporter.section("time by test file")
        for name, seconds in sorted(by_file.items(), key=lambda kv: -kv[1])[:12]:
            terminalreporter.write_line(f"{seconds:8.1f}s {name}")
        terminalreporter.write_line(f"{sum(by_file.values()):8.1f}s in all")
