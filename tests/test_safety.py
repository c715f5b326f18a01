"""Nothing a user owns is destroyed or read from outside; faults end in one line and the next run recovers.

Each test reproduces a failure seen on an earlier commit (issue 12) and asserts the safe behaviour.
"""
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from wf import PROTECTION, REPO, SNAKEMAKE, TINY, in_second_pass, snakemake

from unlearnable import ConfigError, DataError
from unlearnable.cli import main
from unlearnable.data.image_store import build_image_store, load_square
from unlearnable.data.manifest import build_manifest
from unlearnable.data.sources import read_dataset

FAST = ["--rounds", "2", "--surrogate-steps", "2", "--pgd-steps", "2", "--hotflip-rounds", "1", "--candidates", "2",
        "--granularity", "image", "--batch-size", "16", "--device", "cpu", "--model", "tiny-vit"]


def digest(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden ones too) with the hash of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    return errors[0]


@pytest.fixture
def owner_data(shapes_root, tmp_path):
    """A copy of a small captioned folder that the tests may point outputs at."""
    root = tmp_path / "mine" / "photos"
    shutil.copytree(shapes_root, root)
    keep = (root / "captions.csv").read_text().splitlines()[:81]  # 16 images: quick protections
    (root / "captions.csv").write_text("\n".join(keep) + "\n")
    return root


# -- 1. outputs never destroy inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_protect_refuses_an_output_overlapping_the_input(where, owner_data, capsys):
    out = {"same": owner_data, "parent": owner_data.parent, "inside": owner_data / "published"}[where]
    before = digest(owner_data.parent)
    assert main(["protect", str(owner_data), str(out), *FAST]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert {"same": " is the input ", "parent": " contains the input ", "inside": " lies inside the input "}[where] \
        in line
    assert digest(owner_data.parent) == before  # not a byte changed, nothing added


def test_protect_refuses_an_output_that_is_a_file_before_any_work(owner_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.txt"
    out.write_text("my notes\n")
    import unlearnable.owner.protect_folder as owner

    monkeypatch.setattr(owner, "read_dataset", lambda *a, **k: pytest.fail("work started"))
    assert main(["protect", str(owner_data), str(out), *FAST]) == 1
    assert "exists and is not a folder" in one_error_line(capsys.readouterr().err)
    assert out.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out.txt"]


def test_protect_refuses_a_non_empty_output_even_with_overwrite_unless_it_wrote_it(owner_data, tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        assert main(["protect", str(owner_data), str(out), *FAST, *extra]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert ("--overwrite" in line) and (("not empty" in line) if not extra else ("not written by" in line))
    assert digest(out) == {"thesis.tex": hashlib.sha256(b"years of work").hexdigest()}


def test_overwrite_replaces_only_what_unlearnable_wrote(owner_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["protect", str(owner_data), str(out), *FAST]) == 0
    marker = json.loads((out / ".unlearnable-output.json").read_text())
    assert set(marker["files"]) == set(digest(out)) - {".unlearnable-output.json"}
    assert main(["protect", str(owner_data), str(out), *FAST, "--seed", "1"]) == 1  # no --overwrite
    capsys.readouterr()
    assert main(["protect", str(owner_data), str(out), *FAST, "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "private" / "protection.json").read_text())["seed"] == 1
    (out / "published" / "my-edit.txt").write_text("a user's file inside a previous output")
    assert main(["protect", str(owner_data), str(out), *FAST, "--overwrite"]) == 1
    assert "published/my-edit.txt" in one_error_line(capsys.readouterr().err)
    assert (out / "published" / "my-edit.txt").exists()
    assert not list(tmp_path.glob(".out.*"))  # no staging or old copies left behind


def test_a_second_writer_of_the_same_output_is_refused(owner_data, tmp_path):
    from unlearnable.owner.outdir import OutputFolder

    first = OutputFolder(tmp_path / "out", {"dataset": owner_data}, {"a": 1})
    with first:
        second = OutputFolder(tmp_path / "out", {"dataset": owner_data}, {"a": 1})
        with pytest.raises(DataError, match="another unlearnable process is writing"):
            second.__enter__()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from unlearnable.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def test_protect_killed_mid_round_resumes_to_identical_output(owner_data, tmp_path):
    args = ["protect", str(owner_data)]
    slow = [*FAST, "--rounds", "3", "--surrogate-steps", "6"]
    ref = tmp_path / "ref"
    assert subprocess.run(_cli(*args, str(ref), *slow), capture_output=True).returncode == 0
    out = tmp_path / "out"
    _kill_after_first_round(_cli(*args, str(out), *slow), tmp_path / ".out.unlearnable-partial" / "work" / "protection")
    assert not out.exists()  # nothing that looks complete
    res = subprocess.run(_cli(*args, str(out), *slow), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stderr and "resumed from" in res.stderr
    a, b = digest(out), digest(ref)
    assert a.keys() == b.keys()
    data = [k for k in a if not k.endswith(".json")]  # the JSON records hold timings and folder names
    assert len(data) > 16 and {k: a[k] for k in data} == {k: b[k] for k in data}
    history = [json.loads((d / "private/protection.json").read_text())["history"] for d in (out, ref)]
    assert history[0] == history[1]


def test_shapes_refuses_to_replace_an_existing_folder(tmp_path, capsys):
    mine = tmp_path / "Pictures"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    assert main(["shapes", str(mine), "--n-images", "10"]) == 1
    assert "exists and is not empty" in one_error_line(capsys.readouterr().err)
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]


def test_workflow_refuses_results_overlapping_a_dataset(shapes_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_root, data)
    for results in (data, data / "results", tmp_path):
        cfg = json.loads(json.dumps(TINY))
        cfg["datasets"]["shapes"] = {"source": {"kind": "local", "path": str(data)}, "split": {"val": 5, "test": 10}}
        cfg["results"] = str(results)
        res = snakemake(tmp_path / "wd", cfg, "-n")
        assert res.returncode != 0
        line = one_error_line(res.stderr)
        assert "key 'results'" in line and "datasets.shapes.source.path" in line
    assert digest(data) == digest(shapes_root)


# -- 2. inputs are confined ------------------------------------------------------------------------------

def _with_row(root: Path, image: str) -> None:
    with open(root / "captions.csv", "a") as f:
        f.write(f"{image},a photo that is not part of this dataset\n")


@pytest.fixture
def escape_routes(owner_data):
    """Three ways a captions file can point outside its folder, each to a decodable image."""
    other = owner_data.parent / "other" / "images"
    other.mkdir(parents=True)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(other / "x.png")
    (owner_data / "images" / "link.png").symlink_to(other / "x.png")
    return {"dotdot": "../../other/images/x.png", "symlink": "link.png",
            "absolute_chain": "../" * 30 + str(other / "x.png").lstrip("/")}


@pytest.mark.parametrize("route", ["dotdot", "symlink", "absolute_chain"])
def test_paths_outside_the_dataset_are_bad_samples_never_opened(route, escape_routes, owner_data, monkeypatch):
    _with_row(owner_data, escape_routes[route])
    with pytest.raises(DataError, match="path_outside_dataset") as e:
        read_dataset(owner_data)
    assert "\n" not in str(e.value) and "captions.csv: row 82" in str(e.value)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(Path(p)) or real_open(p, *a, **k))
    rows, q = read_dataset(owner_data, on_bad_sample="skip")
    assert q.dropped == {"path_outside_dataset": 1}
    assert len(rows) == 80 and not rows["image_path"].str.contains("x.png|link.png").any()
    assert opened and not any("other" in str(p) or p.name == "link.png" for p in opened)


def test_etc_passwd_is_refused_as_outside_not_as_undecodable(owner_data):
    _with_row(owner_data, "../" * 40 + "etc/passwd")
    rows, q = read_dataset(owner_data, on_bad_sample="skip")
    assert q.dropped == {"path_outside_dataset": 1}


def test_image_store_refuses_a_manifest_path_outside_its_root(owner_data, tmp_path):
    rows, _ = read_dataset(owner_data)
    rows.loc[rows["image_path"] == rows["image_path"][0], "image_path"] = "../../other.png"
    table = build_manifest(rows, {i: "train" for i in rows["image_id"]}).to_pandas()
    with pytest.raises(DataError, match="path_outside_dataset"):
        build_image_store(table, owner_data, tmp_path / "s.npy", 32)
    assert not (tmp_path / "s.npy").exists()


# -- 3. faithful decoding --------------------------------------------------------------------------------

def _fixture(kind: str, path: Path) -> np.ndarray:
    """Write one image file of a given mode; return the RGB pixels a viewer shows (8x8)."""
    if kind == "gray16":
        Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
        return np.full((8, 8, 3), 128, np.uint8)
    if kind == "int32":
        Image.fromarray(np.full((8, 8), 65535, np.int32)).save(path)  # TIFF
        return np.full((8, 8, 3), 255, np.uint8)
    if kind == "float":
        Image.fromarray(np.full((8, 8), 0.25, np.float32)).save(path)
        return np.full((8, 8, 3), 64, np.uint8)
    if kind == "rgba":
        a = np.zeros((8, 8, 4), np.uint8)
        a[..., 0], a[..., 3] = 200, 0  # fully transparent red: shows the white background
        a[:4, :, 3] = 255  # the top half opaque
        Image.fromarray(a).save(path)
        want = np.full((8, 8, 3), 255, np.uint8)
        want[:4] = (200, 0, 0)
        return want
    if kind == "palette_transparent":
        im = Image.new("P", (8, 8), 1)
        im.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
        im.paste(0, (0, 0, 8, 4))
        im.save(path, transparency=0)
        want = np.full((8, 8, 3), (10, 20, 30), np.uint8)
        want[:4] = 255
        return want
    if kind == "exif_rotated":  # stored 8 wide x 4 high, orientation 6: shown 4 wide x 8 high
        a = np.zeros((4, 8, 3), np.uint8)
        a[:, :4] = 255  # left half white
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(path, exif=exif, quality=100, subsampling=0)
        want = np.zeros((8, 4, 3), np.uint8)
        want[:4] = 255  # rotated 90° clockwise: the left half becomes the top half
        return want
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,suffix", [("gray16", ".png"), ("int32", ".tif"), ("float", ".tif"), ("rgba", ".png"),
                                         ("palette_transparent", ".png"), ("exif_rotated", ".jpg")])
def test_each_mode_decodes_to_the_pixels_a_viewer_shows(kind, suffix, tmp_path):
    path = tmp_path / f"{kind}{suffix}"
    want = _fixture(kind, path)
    from unlearnable.data.decode import to_rgb

    with Image.open(path) as im:
        got = np.asarray(to_rgb(im))
    assert got.shape == want.shape
    tol = 8 if suffix == ".jpg" else 1
    assert np.abs(got.astype(int) - want.astype(int)).max() <= tol
    if want.shape[0] == want.shape[1]:  # the store reads through the same decoder
        assert np.abs(load_square(path, 8).astype(int) - want.astype(int)).max() <= tol


# -- 4. faults end in one line, and the next run recovers ------------------------------------------------

def test_describe_fault_names_the_path_for_each_layer():
    import errno

    from unlearnable.faults import describe_fault

    assert describe_fault(OSError(errno.ENOSPC, "No space left on device", "/r/x.npy")) == \
        "/r/x.npy: no space left on device"
    assert describe_fault(OSError(errno.EACCES, "Permission denied", "/r/y"), "/out") == "/r/y: permission denied"
    db = RuntimeError("(sqlite3.OperationalError) database or disk is full")
    assert describe_fault(db, "/out/seed0") == "/out/seed0: no space left on device (RuntimeError)"
    assert describe_fault(ValueError("shape mismatch"), "/out") is None


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    from unlearnable.atomic import atomic_path

    stale = tmp_path / ".seed0.tmp-424242"
    (stale / "images").mkdir(parents=True)
    neighbour = tmp_path / ".seed01.tmp-1"  # another output's temporary: not ours to remove
    neighbour.mkdir()
    with atomic_path(tmp_path / "seed0") as tmp:
        tmp.mkdir()
    assert not stale.exists() and neighbour.exists() and (tmp_path / "seed0").is_dir()


def test_runs_left_running_by_a_killed_job_are_marked_failed(tmp_path):
    import mlflow

    from unlearnable.workflow.tracking import init_store, tracked_run

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    init_store(uri, "e", tmp_path / "art")
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name("e").experiment_id
    dead = mlflow.MlflowClient().create_run(exp, run_name="protect/cell").info.run_id  # a SIGKILLed attempt
    with tracked_run(uri, "e", "protect/cell", {}, {}):
        pass
    with pytest.raises(RuntimeError), tracked_run(uri, "e", "train/cell", {}, {}):
        raise RuntimeError("job failed")
    status = dict(sqlite3.connect(tmp_path / "m.db").execute("select run_uuid, status from runs").fetchall())
    assert status[dead] == "FAILED" and sorted(status.values()) == ["FAILED", "FAILED", "FINISHED"]


def _wf_cmd(wd: Path) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(wd), "--configfile",
            str(wd / "config.yaml"), "--cores", "2"]


@pytest.mark.slow
def test_a_second_workflow_on_the_same_results_is_refused_and_a_killed_one_recovers(tmp_path):
    results = tmp_path / "shared-results"
    cfg = {**json.loads(json.dumps(TINY)), "results": str(results)}
    cfg["mlflow"] = {"tracking_uri": f"sqlite:///{results}/mlflow.db"}
    a, b = tmp_path / "a", tmp_path / "b"
    for wd in (a, b):
        wd.mkdir()
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(_wf_cmd(a), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not list(results.glob("shapes/published/mem/both/tiny-vit/.seed0.tmp-*/images/*.png")):
        assert proc.poll() is None and time.time() < deadline, "workflow ended before publish was seen"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGSTOP)  # frozen mid-publish: still alive, still holding the results lock
    try:
        res = subprocess.run(_wf_cmd(b), capture_output=True, text=True, timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # then killed: the whole workflow, its running jobs included
        proc.wait()
    assert res.returncode != 0
    line = one_error_line(res.stderr)
    assert str(results) in line and "in use by another live workflow" in line and str(a) in line
    assert list(results.glob("shapes/published/mem/both/tiny-vit/.seed0.tmp-*"))  # what the kill left
    res = subprocess.run(_wf_cmd(a) + ["--unlock"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run(_wf_cmd(a), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not list(results.rglob(".*.tmp-*"))
    running = sqlite3.connect(results / "mlflow.db").execute("select name from runs where status='RUNNING'")
    assert running.fetchall() == []


MOUNT = "/usr/bin/mount"


def _tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True)
    res = subprocess.run([MOUNT, "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.decode().strip()}")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_mid_protection_is_one_line_no_running_run_and_resumes_identically(finished, tmp_path):

    from unlearnable.clip.models import ModelSpec, create_model

    disk = tmp_path / "disk"
    _tmpfs(disk, 96)
    try:
        results, wd = disk / "results", tmp_path / "wd"
        wd.mkdir()
        cfg = {**json.loads(json.dumps(TINY)), "results": str(results),
               "mlflow": {"tracking_uri": f"sqlite:///{results}/mlflow.db"}}  # the store fills up too
        (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
        target = str(results / PROTECTION.removeprefix("results/"))
        res = subprocess.run(_wf_cmd(wd) + [f"{results}/shapes/data/images_32px.npy", f"{results}/tracking.json"],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        # a checkpoint holds the surrogate and AdamW's two moments; leave room for round 1's commit only
        state = 3 * 4 * sum(p.numel() for p in create_model(ModelSpec("tiny-vit")).parameters())
        filler = disk / "filler"
        with open(filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(disk).free - int(1.6 * state))
        res = subprocess.run(_wf_cmd(wd) + [target], capture_output=True, text=True, timeout=600)
        assert res.returncode != 0
        line = one_error_line(res.stderr)
        assert "no space left on device" in line and target in line
        work = Path(target + ".work")
        assert json.loads((work / "progress.json").read_text())["rounds_done"] >= 1  # it failed in the middle
        assert not Path(target).exists()
        status = sqlite3.connect(results / "mlflow.db").execute("select status from runs").fetchall()
        assert status == [("FAILED",)]
        filler.unlink()
        res = subprocess.run(_wf_cmd(wd) + [target], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        for name in ("noise.npy", "triggers.npy"):
            assert (Path(target) / name).read_bytes() == (finished / PROTECTION / name).read_bytes(), name
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# -- 5. validation before any job runs -------------------------------------------------------------------

def _dry(tmp_path: Path, mutate) -> subprocess.CompletedProcess:
    cfg = json.loads(json.dumps(TINY))
    mutate(cfg)
    return snakemake(tmp_path, cfg, "-n")


@pytest.mark.parametrize("mutate,words", [
    (lambda c: c["models"]["tiny-vit"].update(arch="tiny-vitt"),
     ["key 'models.tiny-vit.arch'", "unknown architecture 'tiny-vitt'", "tiny-vit"]),
    (lambda c: c["models"]["tiny-vit"].update(pretrained="/no/such/weights.safetensors"),
     ["key 'models.tiny-vit.pretrained'", "weights file not found: /no/such/weights.safetensors"]),
    (lambda c: c["datasets"]["shapes"].update(source={"kind": "local", "pth": "/data"}),
     ["key 'datasets.shapes.source.pth'", "unknown key"]),
    (lambda c: c["methods"].update(rt={"kind": "random_trigger", "token_num": 0}) or c["grid"]["runs"].append(
        {"method": "rt"}), ["key 'methods.rt'", "token_num must be >= 1"]),
    (lambda c: c["methods"].update(e0={"kind": "em", "eps": 0}) or c["grid"]["runs"].append({"method": "e0"}),
     ["key 'methods.e0'", "eps must be >= 1 for kind em", "unprotected"]),
])
def test_config_mistakes_are_one_short_line_before_any_job(mutate, words, tmp_path):
    res = _dry(tmp_path, mutate)
    assert res.returncode != 0
    line = one_error_line(res.stderr)
    assert all(w in line for w in words), line
    assert len(line) < 400
    assert not (tmp_path / "results").exists()


def test_a_split_without_test_images_is_refused_at_the_manifest(owner_data, tmp_path):
    from unlearnable.data.splits import SplitConfig
    from unlearnable.workflow.jobs import make_manifest

    lines = (owner_data / "captions.csv").read_text().splitlines()
    (owner_data / "captions.csv").write_text("\n".join(lines[:6]) + "\n")  # one image
    with pytest.raises(DataError, match="no test images"):
        make_manifest(owner_data, SplitConfig(val=0, test=0.1), tmp_path / "m.parquet", tmp_path / "q.json")
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize("kind", ["mem", "random_trigger"])
def test_trigger_methods_refuse_an_empty_trigger(kind):
    from unlearnable.protect.config import method_config

    with pytest.raises(ConfigError, match="token_num must be >= 1"):
        method_config({"kind": kind, "token_num": 0})
    assert method_config({"kind": "em"}).trigger_len == 0


# -- settings that would publish the data unprotected, or fail after the work began ----------------------

@pytest.mark.parametrize("flags,words", [
    (["--method", "em", "--eps", "0"], "eps must be >= 1 for kind em"),
    (["--method", "strong_em", "--eps", "0"], "eps must be >= 1 for kind strong_em"),
    (["--method", "random_noise", "--eps", "0"], "eps must be >= 1 for kind random_noise"),
    (["--method", "mem", "--rounds", "0"], "rounds must be >= 1 for kind mem"),
    (["--method", "em", "--pgd-steps", "0"], "pgd_steps must be >= 1 for kind em"),
    (["--lr", "nan"], "lr must be a finite number > 0"),
    (["--lr", "-1"], "lr must be a finite number > 0"),
    (["--weight-decay", "inf"], "weight_decay must be a finite number >= 0"),
])
def test_protect_refuses_settings_that_publish_unprotected_before_any_work(flags, words, owner_data, tmp_path,
                                                                          capsys):
    out = tmp_path / "out"
    assert main(["protect", str(owner_data), str(out), *FAST, *flags]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no output, no staging folder


def test_colour_noise_alone_is_still_a_protection():
    from unlearnable.protect.config import method_config

    assert method_config({"kind": "strong_em", "eps": 0, "colour_eps": 16}).colour_eps == 16
    assert method_config({"kind": "mem", "eps": 0}).token_num == 3  # a trigger alone still changes the data


# -- outputs never touch what the user owns, whatever the path ------------------------------------------

@pytest.mark.parametrize("out,words", [("", "an empty path"), ("/", "the filesystem root")])
def test_protect_refuses_an_empty_or_root_output_in_one_line(out, words, owner_data, capsys):
    assert main(["protect", str(owner_data), out, *FAST]) == 1
    assert words in one_error_line(capsys.readouterr().err)


def test_protect_refuses_a_mount_point_as_output_before_any_work(owner_data, capsys):
    mounts = [m for m in ("/dev/shm", "/proc", "/sys", "/dev") if os.path.ismount(m)]
    if not mounts:
        pytest.skip("no mount point found to name")
    before = digest(owner_data)
    assert main(["protect", str(owner_data), mounts[0], *FAST]) == 1
    assert "is a mount point" in one_error_line(capsys.readouterr().err)
    assert digest(owner_data) == before
    assert not Path(mounts[0]).with_name(f".{Path(mounts[0]).name}.unlearnable-partial").exists()


@pytest.mark.parametrize("where", ["input captions", "published folder", "foreign file"])
def test_verify_json_never_overwrites_an_input_or_a_file_it_did_not_write(where, owner_data, tmp_path, capsys):
    published = tmp_path / "published"
    published.mkdir()
    (published / "captions.csv").write_text("image,caption\n")
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": true}\n')
    target = {"input captions": owner_data / "captions.csv", "published folder": published / "v.json",
              "foreign file": foreign}[where]
    before = {**digest(owner_data), **{f"pub/{k}": v for k, v in digest(published).items()},
              "notes": foreign.read_text()}
    assert main(["verify", str(owner_data), str(published), "--device", "cpu", "--json", str(target)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "--json" in line and ("input" in line or "not written by unlearnable verify" in line), line
    assert {**digest(owner_data), **{f"pub/{k}": v for k, v in digest(published).items()},
            "notes": foreign.read_text()} == before


@pytest.mark.parametrize("section,name", [("datasets", "../outside"), ("methods", "a/../../b"), ("models", ".hidden"),
                                          ("defences", "x/y")])
def test_a_config_name_that_is_not_one_path_segment_is_refused(section, name, tmp_path):
    def rename(c):
        c.setdefault(section, {})
        if section == "defences":
            c["defences"][name] = {"kind": "jpeg"}
            return
        old = next(iter(c[section]))
        c[section][name] = c[section].pop(old)
        key = {"datasets": "datasets", "models": "victims"}.get(section)
        if key:
            c["grid"][key] = [name if n == old else n for n in c["grid"][key]]
            if section == "models":
                c["grid"]["surrogates"] = [name if n == old else n for n in c["grid"].get("surrogates", [])]
        else:
            c["grid"]["runs"] = [{**r, "method": name if r["method"] == old else r["method"]}
                                 for r in c["grid"]["runs"]]

    res = _dry(tmp_path, rename)
    assert res.returncode != 0
    line = one_error_line(res.stderr)
    assert f"key '{section}.{name}'" in line and "results folder" in line, line
    assert not (tmp_path / "results").exists() and not (tmp_path.parent / "outside").exists()


def _kill_after_first_round(cmd: list[str], work: Path) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not in_second_pass(work):  # round 1 committed, round 2's pass begun
        assert proc.poll() is None and time.time() < deadline, "protection ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("change", ["image", "caption"])
def test_a_resume_refuses_an_input_changed_since_the_killed_run_or_starts_over(change, owner_data, tmp_path):
    """Same paths, sizes and settings; other bytes. Resuming would publish noise made for another photo."""
    slow = [*FAST, "--rounds", "3", "--surrogate-steps", "6"]
    out = tmp_path / "out"
    cmd = _cli("protect", str(owner_data), str(out), *slow)
    _kill_after_first_round(cmd, tmp_path / ".out.unlearnable-partial" / "work" / "protection")
    if change == "image":
        victim = sorted((owner_data / "images").iterdir())[3]
        st = victim.stat()
        Image.open(sorted((owner_data / "images").iterdir())[4]).save(victim)  # another photo, same name
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        text = (owner_data / "captions.csv").read_text()
        (owner_data / "captions.csv").write_text(text.replace("red", "blue", 1))
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1
    line = one_error_line(res.stderr)
    assert "the input changed since the unfinished run" in line and "--restart" in line, line
    assert not out.exists() and (tmp_path / ".out.unlearnable-partial").is_dir()  # nothing lost either
    res = subprocess.run(cmd + ["--restart"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "starting again" in res.stderr and "resumed from" not in res.stderr
    ref = tmp_path / "ref"
    assert subprocess.run(_cli("protect", str(owner_data), str(ref), *slow), capture_output=True).returncode == 0
    a, b = digest(out / "private"), digest(ref / "private")
    assert {k: a[k] for k in a if k.endswith(".npy")} == {k: b[k] for k in b if k.endswith(".npy")}


def test_a_key_given_twice_in_a_config_file_is_one_line_before_any_job(tmp_path):
    """PyYAML (and Snakemake's loader) keep a repeated key's last value silently: `eps: 8` then `eps: 0`."""
    cfg = {k: v for k, v in TINY.items() if k != "precision"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg) + "precision: fp32\nprecision: bf16\n")
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(tmp_path), "--configfile",
                          str(tmp_path / "config.yaml"), "-n"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    line = one_error_line(res.stderr)
    assert "config.yaml: line" in line and "key 'precision' is given twice in one mapping" in line, line
    assert not (tmp_path / "results").exists()


def test_a_yaml_merge_is_no_repeated_key():
    from unlearnable.workflow.configschema import load_yaml

    config = load_yaml(REPO / "config" / "grids" / "paper.yaml")  # `mem5: {<<: *mem, token_num: 5}`
    assert config["methods"]["mem5"]["token_num"] == 5 and config["methods"]["mem5"]["rounds"] == 20


def test_a_kill_at_every_rename_and_unlink_of_publishing_resumes_to_the_same_bytes(shapes_root, tmp_path):
    """A real SIGKILL (tests/faultkill/sitecustomize.py) right after each rename, replace, unlink, rmdir and
    pwrite under the output's folder, in the command or in its publishing child, outside the protection's own
    work folder (tests/test_protect.py covers that one call by call): the same command then ends with the bytes
    of an uninterrupted run, and no killed run leaves an output that looks complete."""
    data = tmp_path / "photos"
    shutil.copytree(shapes_root, data)
    (data / "captions.csv").write_text("\n".join((data / "captions.csv").read_text().splitlines()[:61]) + "\n")
    args = ["--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "1", "--hotflip-rounds", "1", "--candidates",
            "2", "--batch-size", "8", "--device", "cpu", "--threads", "1"]
    hooks = str(REPO / "tests" / "faultkill")

    def run(run_dir: Path, kill_at: int) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([hooks, str(REPO / "src")]),
               "UNLEARNABLE_KILL_UNDER": str(run_dir), "UNLEARNABLE_KILL_COUNTER": str(run_dir) + ".calls",
               "UNLEARNABLE_KILL_AT": str(kill_at), "UNLEARNABLE_KILL_SKIP": "/work/protection/"}
        return subprocess.run([sys.executable, "-m", "unlearnable.cli", "protect", str(data), str(run_dir / "out"),
                               *args], capture_output=True, text=True, env=env, timeout=600)

    def result(out: Path) -> dict:
        return {k: v for k, v in digest(out).items() if not k.endswith(".json")}  # JSON holds timings

    ref = tmp_path / "ref"
    assert run(ref, 0).returncode == 0
    calls = (tmp_path / "ref.calls").read_text().splitlines()
    kinds = {c.split()[0] for c in calls}
    assert {"replace", "rename", "unlink"} <= kinds and any("published" in c for c in calls), calls
    want = result(ref / "out")
    assert any(k.startswith("published/images/") for k in want)
    for n in range(1, len(calls) + 1):
        run_dir = tmp_path / f"k{n}"
        killed = run(run_dir, n)
        assert killed.returncode != 0, f"call {n} ({calls[n - 1]}) was never reached"
        if not (run_dir / "out" / ".unlearnable-output.json").exists():  # else the kill came after the last move
            resumed = run(run_dir, 0)
            assert resumed.returncode == 0, (calls[n - 1], resumed.stderr[-2000:])
        assert result(run_dir / "out") == want, f"killed after call {n}: {calls[n - 1]}"
