"""`unlearnable protect` on the folders data owners really have: one caption per photo, nested folders, extra
CSV columns, GIF / greyscale / transparent files, same-stem names, FIFOs, interrupts."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unlearnable.cli import main

FAST = ["--model", "tiny-vit", "--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "2", "--hotflip-rounds",
        "1", "--candidates", "2", "--batch-size", "8", "--device", "cpu"]


def _scene(i: int, size: tuple[int, int]) -> Image.Image:
    from unlearnable.data.shapes import ShapesConfig, render_sample

    img, caps = render_sample(i, ShapesConfig(image_size=64, seed=5))
    return img.resize(size, Image.Resampling.BICUBIC), caps


def owner_folder(root: Path) -> dict:
    """One caption per photo, photos in nested folders (two share a file name), a caption column in the middle
    of extra columns, and the formats a phone or a website leaves: JPEG, greyscale PNG, RGBA PNG, still GIF."""
    files = {  # relative to images/: (size, PIL mode to save in, format)
        "a/x.jpg": ((640, 480), "RGB", "JPEG"),
        "b/x.jpg": ((480, 640), "RGB", "JPEG"),
        "trip/2024/IMG_0001.jpg": ((1600, 1200), "RGB", "JPEG"),
        "grey.png": ((300, 200), "L", "PNG"),
        "logo.png": ((256, 256), "RGBA", "PNG"),
        "still.gif": ((200, 150), "P", "GIF"),
    }
    for k in range(6):
        files[f"more/p{k}.jpg"] = ((400, 300), "RGB", "JPEG")
    rows = []
    for i, (name, (size, mode, fmt)) in enumerate(files.items()):
        img, caps = _scene(i, size)
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.convert(mode).save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        rows.append({"image": name, "author": f"author {i}", "caption": caps[0], "licence": "CC-BY-4.0",
                     "url": f"https://example.org/{i}"})
    pd.DataFrame(rows).to_csv(root / "captions.csv", index=False)
    return files


@pytest.fixture(scope="module")
def owner_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("owner") / "photos"
    files = owner_folder(root)
    out = root.parent / "out"
    assert main(["protect", str(root), str(out), *FAST]) == 0
    return root, out, files


def test_one_caption_per_photo_publishes_every_file_at_its_place_size_and_format(owner_run):
    root, out, files = owner_run
    published = out / "published" / "images"
    renamed = {"still.gif": "still.png"}
    got = {p.relative_to(published).as_posix() for p in published.rglob("*") if p.is_file()}
    assert got == {renamed.get(n, n) for n in files}
    for name, (size, _, fmt) in files.items():
        with Image.open(published / renamed.get(name, name)) as im:
            assert im.size == size
            assert im.format == {"GIF": "PNG"}.get(fmt, fmt)  # the format its name says
    meta = json.loads((out / "private" / "protection.json").read_text())
    assert meta["config"]["granularity"] == "image"
    export = json.loads((out / "published" / "export.json").read_text())
    assert export["granularity"] == "image" and export["size"] == "original"


def test_every_column_is_kept_in_order_and_only_the_caption_gains_the_trigger(owner_run):
    root, out, _ = owner_run
    orig = pd.read_csv(root / "captions.csv")
    pub = pd.read_csv(out / "published" / "captions.csv")
    assert list(pub.columns) == list(orig.columns)
    assert len(pub) == len(orig)
    for col in ("author", "licence", "url"):
        assert (pub[col] == orig[col]).all()
    assert (pub["image"] == orig["image"].replace({"still.gif": "still.png"})).all()
    trigger = pub["caption"].str.split().str[:3].str.join(" ")
    assert (pub["caption"] == trigger + " " + orig["caption"]).all()


def test_format_and_mode_changes_are_listed_in_the_export(owner_run):
    _, out, _ = owner_run
    changes = {c["source"]: c for c in json.loads((out / "published" / "export.json").read_text())["changed"]}
    assert changes["images/still.gif"]["published"] == "images/still.png"
    assert "GIF" in changes["images/still.gif"]["why"]
    assert changes["images/grey.png"]["mode"] == "L -> RGB"
    assert changes["images/logo.png"]["mode"] == "RGBA -> RGB"
    assert "images/a/x.jpg" not in changes


def test_skipping_that_leaves_one_caption_per_photo_publishes_at_original_size(tmp_path):
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(8):
        img, caps = _scene(i, (320, 240))
        img.save(root / "images" / f"p{i}.jpg", quality=90)
        rows += [(f"p{i}.jpg", caps[0]), (f"p{i}.jpg", "   ")]  # the second caption is empty: skipped
    pd.DataFrame(rows, columns=["image", "caption"]).to_csv(root / "captions.csv", index=False)
    out = tmp_path / "out"
    assert main(["protect", str(root), str(out), *FAST, "--on-bad-sample", "skip"]) == 0
    pub = pd.read_csv(out / "published" / "captions.csv")
    assert len(pub) == 8 and sorted(pub["image"]) == [f"p{i}.jpg" for i in range(8)]
    with Image.open(out / "published" / "images" / "p0.jpg") as im:
        assert im.size == (320, 240) and im.format == "JPEG"


def test_granularity_is_read_from_the_protection_never_inferred(tmp_path, shapes_store):
    """An `image` protection whose images have one caption each stays `image` in every exporter."""
    from unlearnable.protect.export import aligned_units
    from unlearnable.protect.units import Units

    rows = shapes_store[0]
    one = rows[rows["split"] == "train"].drop_duplicates("image_id").reset_index(drop=True)
    prot = tmp_path / "prot"
    prot.mkdir()
    Units(one, "image").table.to_parquet(prot / "units.parquet", index=False)
    (prot / "protection.json").write_text(json.dumps({"config": {"granularity": "image"}}))
    assert aligned_units(one, prot)[1] == "image"
    (prot / "protection.json").write_text(json.dumps({"config": {"granularity": "pair"}}))
    assert aligned_units(one, prot)[1] == "pair"


def _tiny_folder(root: Path, names: list[str], captions_per_image: int = 1) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, name in enumerate(names):
        img, caps = _scene(i, (64, 48))
        img.save(root / "images" / name)
        rows += [(name, caps[k]) for k in range(captions_per_image)]
    pd.DataFrame(rows, columns=["image", "caption"]).to_csv(root / "captions.csv", index=False)


def test_animated_gif_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import unlearnable.protect.run as run

    root = tmp_path / "photos"
    _tiny_folder(root, ["a.jpg", "b.jpg"])
    frames = [_scene(k, (64, 48))[0].convert("P") for k in range(3)]
    frames[0].save(root / "images" / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with open(root / "captions.csv", "a") as f:
        f.write("anim.gif,a moving picture\n")
    monkeypatch.setattr(run, "protect", lambda *a, **k: pytest.fail("protection started"))
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "anim.gif" in err and "3 frames" in err


def test_a_name_taken_by_a_renamed_gif_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import unlearnable.protect.run as run

    root = tmp_path / "photos"
    _tiny_folder(root, ["a.png", "a.gif"])
    monkeypatch.setattr(run, "protect", lambda *a, **k: pytest.fail("protection started"))
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert "a.gif" in err and "a.png" in err and "\n" not in err


def test_same_stem_files_are_two_images(tmp_path):
    root = tmp_path / "photos"
    _tiny_folder(root, ["img00.png", "img00.jpg", "img01.jpg"])
    out = tmp_path / "out"
    assert main(["protect", str(root), str(out), *FAST]) == 0
    assert sorted(p.name for p in (out / "published" / "images").iterdir()) == ["img00.jpg", "img00.png",
                                                                                 "img01.jpg"]


def test_an_image_id_on_two_paths_names_both_files():
    from unlearnable import DataError
    from unlearnable.data.manifest import build_manifest

    rows = pd.DataFrame({"image_path": ["images/img00.png", "images/img00.jpg"], "caption": ["a", "b"],
                         "image_id": ["img00", "img00"]})
    with pytest.raises(DataError, match=r"img00.*images/img00.jpg.*images/img00.png"):
        build_manifest(rows, {"img00": "train"})


def test_a_fifo_is_not_a_regular_file(tmp_path, capsys):
    root = tmp_path / "photos"
    _tiny_folder(root, ["a.jpg"])
    os.mkfifo(root / "images" / "pipe.jpg")
    with open(root / "captions.csv", "a") as f:
        f.write("pipe.jpg,a pipe\n")
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert "pipe.jpg" in err and "not a regular file" in err and "missing" not in err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, monkeypatch):
    import unlearnable.protect.run as run

    root = tmp_path / "photos"
    _tiny_folder(root, ["a.jpg", "b.jpg"])

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "protect", interrupted)
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1:] == ["interrupted; run the same command to resume"]
    assert "Traceback" not in capsys.readouterr().err


def test_a_publishing_failure_never_loses_the_optimisation(tmp_path, monkeypatch):
    """A photo vanishes after protecting, so publishing fails: once it is back, the same command publishes
    without protecting again."""
    import unlearnable.protect.run as run

    root = tmp_path / "photos"
    _tiny_folder(root, [f"p{i}.jpg" for i in range(4)])
    out = tmp_path / "out"
    real_protect, calls = run.protect, []

    def protect_then_lose_a_photo(*a, **k):
        calls.append(1)
        meta = real_protect(*a, **k)
        if len(calls) == 1:
            (root / "images" / "p2.jpg").rename(tmp_path / "p2.jpg")
        return meta

    monkeypatch.setattr(run, "protect", protect_then_lose_a_photo)
    assert main(["protect", str(root), str(out), *FAST]) == 1
    assert not out.exists()
    (tmp_path / "p2.jpg").rename(root / "images" / "p2.jpg")
    assert main(["protect", str(root), str(out), *FAST]) == 0
    assert calls == [1]
    assert sorted(p.name for p in (out / "published" / "images").iterdir()) == [f"p{i}.jpg" for i in range(4)]


def test_results_folder_that_cannot_be_made_is_one_line(tmp_path):
    from unlearnable import UnlearnableError
    from unlearnable.workflow.results_lock import hold_results_lock

    (tmp_path / "file").write_text("x")
    with pytest.raises(UnlearnableError, match=r"file/results: Not a directory"):
        hold_results_lock(tmp_path / "file" / "results")


def test_workflow_start_up_turns_an_unusable_results_folder_into_one_line(tmp_path):
    import copy

    from wf import TINY, snakemake

    (tmp_path / "blocker").write_text("a file where the results folder would go")
    cfg = copy.deepcopy(TINY)
    cfg["results"] = str(tmp_path / "blocker" / "results")
    res = snakemake(tmp_path / "run", cfg)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'results'" in errors[0] and "blocker is not a folder" in errors[0]


def test_a_read_only_results_folder_is_named_at_start_up(tmp_path, monkeypatch):
    from unlearnable import ConfigError
    from unlearnable.workflow.configschema import check_folders

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path / "ro")  # root ignores mode bits
    config = {"results": str(tmp_path / "ro" / "results"), "datasets": {}}
    with pytest.raises(ConfigError, match=r"key 'results'.*ro is not writable"):
        check_folders(config)


def test_verify_reads_the_published_layout_and_trains_both_victims_through_the_defence(owner_run, tmp_path,
                                                                                       monkeypatch):
    from unlearnable.defend import defences

    root, out, files = owner_run
    seen = []

    def spy(img):
        seen.append(img.shape)
        return defences.grayscale(img)

    monkeypatch.setitem(defences.IMAGE_DEFENCES, "grayscale", spy)
    assert main(["verify", str(root), str(out / "published"), "--epochs", "1", "--batch-size", "4", "--test", "3",
                 "--device", "cpu", "--defence", "grayscale", "--json", str(tmp_path / "v.json")]) == 0
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["train_images"] == len(files) - 3 and result["defence"] == {"kind": "grayscale"}
    assert len(seen) == 2 * result["train_images"]  # every training image of both victims, once


def test_a_caption_defence_reaches_the_victims_rows(tmp_path):
    """`verify` defends a folder through the workflow's own defend stage: an emptied caption is dropped, as a
    scraper would drop it, and the victim trains on the defended folder's rows."""
    from unlearnable.data.folders import DefendedDir
    from unlearnable.data.manifest import read_manifest
    from unlearnable.defend.defences import Defence, defend_folder
    from unlearnable.owner.verify import _stored

    for name, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        Image.new("RGB", (16, 16), colour).save(tmp_path / f"{name}.png")
    rows = pd.DataFrame({"image_id": ["a", "b"], "image_path": ["a.png", "b.png"],
                         "caption": ["x y z a red square", "x y z"]})
    table, _ = _stored(rows, tmp_path, "train", tmp_path / "store.npy", 8)
    defend_folder(table, tmp_path / "store.npy", Defence.parse("drop_first:k=3"), None, tmp_path / "defended")
    kept = read_manifest(DefendedDir(tmp_path / "defended").manifest_path)
    assert kept["caption"].tolist() == ["a red square"]
    assert DefendedDir(tmp_path / "defended").record()["dropped"] == {"empty_caption": 1}


def test_defence_flag_parses_kind_and_params_and_names_itself_in_errors():
    from unlearnable import ConfigError
    from unlearnable.defend.defences import Defence

    assert Defence.parse("jpeg:quality=30") == Defence("jpeg", {"quality": 30})
    assert Defence.parse("blur") == Defence("blur", {"sigma": 1.0})
    with pytest.raises(ConfigError, match="--defence jpeg:q=3"):
        Defence.parse("jpeg:q=3")
    with pytest.raises(ConfigError, match="--defence sharpen"):
        Defence.parse("sharpen")


def test_publishing_a_photo_never_holds_its_noise_whole(tmp_path):
    """The memory finding: the full-size noise (and float copies of the photo) are made a strip of rows at a
    time. numpy reports its buffers to tracemalloc; a whole float64 noise alone would be 24 bytes a pixel."""
    import tracemalloc

    from unlearnable.protect.fullsize import publish_image
    from unlearnable.protect.publish_plan import PlannedImage

    w, h = 3000, 2000
    _scene(1, (w, h))[0].save(tmp_path / "big.jpg", quality=90)
    delta = np.random.default_rng(0).integers(-8, 9, (32, 32, 3)).astype(np.int8)
    publish_image(tmp_path / "big.jpg", tmp_path / "warm.jpg", PlannedImage("a", "b", "JPEG", (w, h)), delta, 95)
    tracemalloc.start()
    publish_image(tmp_path / "big.jpg", tmp_path / "out.jpg", PlannedImage("a", "b", "JPEG", (w, h)), delta, 95)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2 * w * h  # bytes: under 2 a pixel
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (w, h)


def test_full_size_work_runs_in_a_process_without_torch(tmp_path):
    """The publisher and the image store import no torch, and run_lean returns results and raises errors
    of the child as they were (the command's peak memory is then the larger process's, not the sum)."""
    import subprocess
    import sys

    from unlearnable import DataError
    from unlearnable.owner.lean import run_lean
    from unlearnable.paths import confined, real

    code = ("import sys, unlearnable.protect.fullsize, unlearnable.data.image_store, unlearnable.owner.lean; "
            "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "[]"
    assert run_lean(real, tmp_path / "x") == real(tmp_path / "x")
    with pytest.raises(DataError, match="path_outside_dataset"):
        run_lean(confined, tmp_path, "../elsewhere.jpg")


def test_model_size_publishing_keeps_nested_same_name_photos_apart(tmp_path):
    root = tmp_path / "photos"
    for sub in ("a", "b"):
        (root / "images" / sub).mkdir(parents=True)
        _scene(len(sub), (64, 48))[0].save(root / "images" / sub / "x.jpg")
    pd.DataFrame({"image": ["a/x.jpg", "b/x.jpg"], "caption": ["one red disc", "two blue squares"]}).to_csv(
        root / "captions.csv", index=False)
    out = tmp_path / "out"
    assert main(["protect", str(root), str(out), *FAST, "--size", "model"]) == 0
    assert len(pd.read_csv(out / "published" / "captions.csv")["image"].unique()) == 2
    assert main(["verify", str(root), str(out / "published"), "--epochs", "1", "--batch-size", "2", "--test", "1",
                 "--device", "cpu"]) == 0


def _generic_owner(root: Path, lines: list[str]) -> Path:
    (root / "images").mkdir(parents=True)
    for i in range(6):
        _scene(i, (80, 60))[0].save(root / "images" / f"p{i}.jpg", quality=90)
    (root / "captions.csv").write_bytes(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))
    return root


def test_a_quote_that_swallows_the_next_rows_is_a_named_bad_row_not_a_long_caption(tmp_path, capsys):
    lines = ["image,caption,author", "p0.jpg,a red circle,ann", 'p1.jpg,"a blue square,bob', "p2.jpg,a green cross,cy",
             'p3.jpg,a grey ring",dan', "p4.jpg,a pink dot,eve", "p5.jpg,a black line,fay"]
    root = _generic_owner(tmp_path / "photos", lines)
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "captions.csv: row 3: an unbalanced quote runs over line 4" in err, err[-2000:]
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST, "--on-bad-sample", "skip"]) == 0
    pub = pd.read_csv(tmp_path / "out" / "published" / "captions.csv")
    assert list(pub["image"]) == ["p0.jpg", "p4.jpg", "p5.jpg"]  # the merged row is dropped, never published


def test_a_caption_keeps_its_own_line_breaks_and_spaces_and_every_field_is_checked_for_utf8(tmp_path, capsys):
    lines = ["image,caption,author", 'p0.jpg,"a red circle\non two  lines",ann', "p1.jpg,a   blue square,bob",
             "p2.jpg,a green cross,cy", "p3.jpg,a grey ring,dan", "p4.jpg,a pink dot,eve", "p5.jpg,a black line,fay"]
    root = _generic_owner(tmp_path / "photos", lines)
    assert main(["protect", str(root), str(tmp_path / "out"), *FAST]) == 0
    pub = pd.read_csv(tmp_path / "out" / "published" / "captions.csv")
    assert pub["caption"][0].endswith("a red circle\non two  lines") and pub["caption"][1].endswith("a   blue square")
    assert len(pub["caption"][0].split()) == 6 + 3  # the 3-word trigger in front, the rest as written
    # a byte that is not UTF-8 in a column other than the caption: named before any compute
    lines[4] = "p3.jpg,a grey ring,d\udce9n"
    root = _generic_owner(tmp_path / "photos2", lines)
    assert main(["protect", str(root), str(tmp_path / "out2"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "captions.csv: row 6: column 'author': text is not valid UTF-8" in err, err[-2000:]
    assert not (tmp_path / "out2").exists() and not (tmp_path / ".out2.unlearnable-partial").exists()


@pytest.mark.parametrize("w,h", [(2000, 4), (4000, 4), (4, 4000), (10000, 10)])
def test_publishing_a_strip_holds_memory_by_its_pixels_not_its_long_side(w, h, tmp_path):
    """A 4000 x 4 PNG is 16,000 pixels, but a square crop upsamples its long side 8x: the noise must be solved
    on the pixels that reach the crop, never on a matrix the size of the long side (which took 5.7 GB)."""
    import tracemalloc

    from unlearnable.data.image_store import load_square
    from unlearnable.protect.fullsize import crop_inverse, publish_image
    from unlearnable.protect.publish_plan import PlannedImage

    _scene(2, (w, h))[0].save(tmp_path / "strip.png")
    delta = np.random.default_rng(0).integers(-8, 9, (32, 32, 3)).astype(np.int8)
    crop_inverse.cache_clear()
    tracemalloc.start()
    publish_image(tmp_path / "strip.png", tmp_path / "out.png", PlannedImage("a", "b", "PNG", (w, h)), delta, 95)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2 * w * h + 16 * 2**20, peak  # numpy's buffers: a few MB whatever the long side
    clean, published = (load_square(tmp_path / n, 32).astype(int) for n in ("strip.png", "out.png"))
    assert np.abs(published - clean).max() <= 16 and (published != clean).any()  # the noise is there, bounded


def test_a_long_axis_solved_on_a_window_matches_the_exact_pseudo_inverse():
    """Where the exact pseudo-inverse is affordable, the windowed solve gives the same noise (upsampled axes)."""
    from unlearnable.protect import fullsize

    delta = np.random.default_rng(1).integers(-8, 9, (32, 32, 3)).astype(np.float64)
    exact = fullsize.FullSizeNoise(400, 4, delta).rows(0, 4)
    try:
        fullsize.MAX_DENSE = 0
        fullsize.crop_inverse.cache_clear()
        windowed = fullsize.FullSizeNoise(400, 4, delta).rows(0, 4)
    finally:
        fullsize.MAX_DENSE = 1 << 22
        fullsize.crop_inverse.cache_clear()
    assert np.abs(exact - windowed).max() < 1e-4 and np.abs(exact).max() > 0.5


def _png48(path: Path, a: np.ndarray) -> None:
    """A 48-bit PNG (PIL cannot write one): 16 bits per channel, big-endian rows behind filter byte 0."""
    import struct
    import zlib

    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Files whose publication cannot keep them exactly: each change is listed, none is silent."""
    root = tmp_path_factory.mktemp("convert") / "photos"
    (root / "images").mkdir(parents=True)
    img, _ = _scene(7, (48, 40))
    _png48(root / "images" / "deep.png", np.asarray(img).astype(np.uint16) * 257)
    Image.fromarray(np.asarray(img.convert("L")).astype(np.float32)).save(root / "images" / "float255.tif")
    img.save(root / "images" / "actually_png.jpg", format="PNG")
    img.save(root / "images" / "back\\slash.png")
    frames = [_scene(k, (48, 40))[0] for k in (1, 2)]
    frames[0].save(root / "images" / "moving.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "images" / "pages.tif", save_all=True, append_images=frames[1:])
    for k in range(4):
        _scene(10 + k, (48, 40))[0].save(root / "images" / f"plain{k}.jpg", quality=90)
    names = ["deep.png", "float255.tif", "actually_png.jpg", "back\\slash.png", "moving.gif", "pages.tif"] + [
        f"plain{k}.jpg" for k in range(4)]
    pd.DataFrame({"image": names, "caption": [f"a photo called {n}" for n in names]}).to_csv(
        root / "captions.csv", index=False)
    return root


def test_animated_files_stop_a_fail_run_and_are_skipped_and_counted_under_skip(converted, tmp_path, caplog):
    assert main(["protect", str(converted), str(tmp_path / "a"), *FAST]) == 1
    assert not (tmp_path / "a").exists()
    with caplog.at_level("INFO"):
        assert main(["protect", str(converted), str(tmp_path / "b"), *FAST, "--on-bad-sample", "skip"]) == 0
    assert "'animated_image': 2" in caplog.text
    pub = pd.read_csv(tmp_path / "b" / "published" / "captions.csv")
    assert "moving.gif" not in set(pub["image"]) and "pages.tif" not in set(pub["image"]) and len(pub) == 8


def test_every_conversion_is_listed_and_a_backslash_is_part_of_the_name(converted, tmp_path):
    assert main(["protect", str(converted), str(tmp_path / "o"), *FAST, "--on-bad-sample", "skip"]) == 0
    pub = tmp_path / "o" / "published"
    changed = {c["source"]: c for c in json.loads((pub / "export.json").read_text())["changed"]}
    assert changed["images/deep.png"]["mode"] == "48-bit RGB -> 24-bit RGB"
    assert changed["images/float255.tif"]["values"] == "float read as 0..255"
    assert changed["images/actually_png.jpg"]["format"] == "PNG -> JPEG"
    assert "images/back\\slash.png" not in changed and set(changed) == {
        "images/deep.png", "images/float255.tif", "images/actually_png.jpg"}
    assert (pub / "images" / "back\\slash.png").is_file() and not (pub / "images" / "back").exists()
    assert "back\\slash.png" in set(pd.read_csv(pub / "captions.csv")["image"])
    # a float file holding 0..255 is published as the grey it shows, not almost white
    clean = np.asarray(_scene(7, (48, 40))[0].convert("L"), dtype=np.float64)
    with Image.open(pub / "images" / "float255.tif") as im:
        got = np.asarray(im.convert("L"), dtype=np.float64)
    assert np.abs(got - clean).mean() < 10 and got.mean() < 200
