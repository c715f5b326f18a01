"""Layout parsers, dirty data, safe extraction and the paper's splits."""
import json
import shutil
import stat
import zipfile
from pathlib import Path

import layout_builders as lb
import pytest
from PIL import Image

from unlearnable import ConfigError, DataError
from unlearnable.data import manifest as mf
from unlearnable.data.archive import safe_extract
from unlearnable.data.sources import LayoutConfig, detect_layout, read_dataset
from unlearnable.data.splits import SplitConfig, assign_split
from unlearnable.workflow.jobs import make_manifest

REPO = Path(__file__).resolve().parents[1]
NAMES8K = [f"{1000 + i}_abc{i}.jpg" for i in range(8)]


def test_flickr8k_captions_with_commas_and_quotes(tmp_path):
    root = lb.flickr8k(tmp_path / "f8k", NAMES8K)
    rows, q = read_dataset(root)
    assert detect_layout(root) == "flickr8k"
    assert len(rows) == 40 and rows["image_id"].nunique() == 8
    assert set(rows["image_path"]) == {f"Images/{n}" for n in NAMES8K}
    assert "a green square, seen from above" in set(rows["caption"])  # quoted, with a comma inside
    assert not q.dropped and not q.repaired


def test_flickr30k_pipes_padding_nesting_and_the_known_malformed_row(tmp_path):
    names = [f"{500 + i}.jpg" for i in range(6)]
    root = lb.flickr30k(tmp_path / "f30k", names)
    rows, q = read_dataset(root, on_bad_sample="skip")
    assert len(rows) == 30 and q.repaired == {"repaired_row": 1} and not q.dropped
    assert set(rows["image_path"]) == {f"flickr30k_images/flickr30k_images/{n}" for n in names}
    repaired = rows[(rows["image_id"] == "501") & rows["caption"].str.endswith("number 4")]
    assert len(repaired) == 1 and repaired["caption"].iat[0] == lb.captions_for(1)[4]
    # a row that cannot be repaired is a bad sample: named in `fail` mode, counted in `skip` mode
    csv = root / "flickr30k_images" / "results.csv"
    csv.write_text(csv.read_text() + "503.jpg\n")
    with pytest.raises(DataError, match=r"results.csv: row 32: expected 3 '\|'-separated fields"):
        read_dataset(root)
    rows, q = read_dataset(root, on_bad_sample="skip")
    assert len(rows) == 30 and q.dropped == {"malformed_row": 1}


def test_coco_train_and_val_joined_with_integer_ids(tmp_path):
    root = lb.coco2017(tmp_path / "coco", [9, 25, 30], [73, 312])
    rows, _ = read_dataset(root)
    assert detect_layout(root) == "coco2017"
    assert sorted(set(rows["image_id"]), key=int) == ["9", "25", "30", "73", "312"]
    assert "coco2017/val2017/000000000073.jpg" in set(rows["image_path"])
    assert len(rows) == 25


def test_files_are_found_inside_nested_copies(tmp_path):
    lb.flickr8k(tmp_path / "copy" / "flickr8k" / "data", NAMES8K)
    rows, _ = read_dataset(tmp_path / "copy")
    assert set(rows["image_path"]) == {f"flickr8k/data/Images/{n}" for n in NAMES8K}


def test_non_utf8_caption_is_named_or_counted(tmp_path):
    root = lb.flickr8k(tmp_path / "f8k", NAMES8K)
    raw = (root / "captions.txt").read_bytes().splitlines()
    raw[3] = raw[3] + b" caf\xe9"  # Latin-1 byte
    (root / "captions.txt").write_bytes(b"\n".join(raw) + b"\n")
    with pytest.raises(DataError, match=r"captions.txt: row 4: text is not valid UTF-8"):
        read_dataset(root)
    rows, q = read_dataset(root, on_bad_sample="skip")
    assert len(rows) == 39 and q.dropped == {"non_utf8_text": 1}


def test_dirty_images_each_counted_under_their_reason(tmp_path):
    root = lb.flickr8k(tmp_path / "f8k", NAMES8K)
    img = root / "Images"
    full = (img / NAMES8K[0]).read_bytes()
    (img / NAMES8K[0]).write_bytes(full[: len(full) // 2])  # truncated JPEG
    (img / NAMES8K[1]).write_bytes(b"")  # zero-size
    (img / NAMES8K[2]).unlink()  # missing
    (img / NAMES8K[3]).write_bytes(b"GIF89a not really")  # undecodable
    Image.new("RGB", (200, 200)).save(img / NAMES8K[4])  # too many pixels for the limit below
    cap = root / "captions.txt"
    lines = cap.read_text().splitlines()
    cap.write_text("\n".join(lines + [lines[-1], f"{NAMES8K[5]},   "]) + "\n")  # duplicate + blank caption
    with pytest.raises(DataError, match=r"captions.txt: row 43: empty caption"):
        read_dataset(root, LayoutConfig(max_image_pixels=10_000))
    cap.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{NAMES8K[0]}: cannot decode image .*(?i:truncated).*captions.txt: row 2\)"):
        read_dataset(root, LayoutConfig(max_image_pixels=10_000))
    cap.write_text("\n".join(lines + [lines[-1], f"{NAMES8K[5]},   "]) + "\n")
    rows, q = read_dataset(root, LayoutConfig(max_image_pixels=10_000), on_bad_sample="skip")
    assert q.dropped == {"truncated_image": 5, "empty_image": 5, "missing_image": 5, "undecodable_image": 5,
                         "huge_image": 5, "empty_caption": 1}
    assert q.repeated == {"repeated_caption": 1}  # the repeated row is kept: its photo is a good one
    assert rows["image_id"].nunique() == 3 and len(rows) == 16
    assert "200x200" in q.examples["huge_image"]


def _zip_with(tmp_path, name: str, symlink: bool = False) -> Path:
    out = tmp_path / "evil.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("ok/captions.txt", "image,caption\n")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd" if symlink else "pwned")
    return out


@pytest.mark.parametrize("name,symlink,why", [("../escape.txt", False, r"escapes the target folder"),
                                              ("ok/../../escape.txt", False, r"escapes the target folder"),
                                              ("/tmp/abs-escape.txt", False, "absolute path"),
                                              ("ok/link", True, "symbolic link")])
def test_zip_slip_archives_are_refused_before_anything_is_written(tmp_path, name, symlink, why):
    dest = tmp_path / "out" / "inner"
    with pytest.raises(DataError, match=f"refusing to extract member .*{why}"):
        safe_extract(_zip_with(tmp_path, name, symlink), dest)
    assert not dest.exists() and not (tmp_path / "out" / "escape.txt").exists()
    assert not Path("/tmp/abs-escape.txt").exists()


def test_a_zip_bomb_is_refused_before_a_byte_is_written(tmp_path):
    """A 2 MB archive declaring 2 GB (zeros compress 1000x): named as a bomb, not blamed on corruption."""
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/captions.txt", "image,caption\n")
        with zf.open("ok/zeros.bin", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(64):  # 64 MiB of zeros: about 64 KB compressed
                f.write(block)
    assert bomb.stat().st_size < 1 << 20
    dest = tmp_path / "out"
    with pytest.raises(DataError, match=r"member 'ok/zeros.bin' would expand \d+x .*a zip bomb, refused before"):
        safe_extract(bomb, dest)
    assert not dest.exists()


@pytest.mark.parametrize("names,words", [(["a/b", "a/b/c.txt"], "'a/b' is both a file and a folder"),
                                         (["a/x.txt", "a/x.txt"], "member 'a/x.txt' is given twice")])
def test_an_archive_whose_members_clash_is_one_line_before_extracting(tmp_path, names, words):
    bad = tmp_path / "clash.zip"
    with zipfile.ZipFile(bad, "w") as zf, pytest.warns(UserWarning) if len(set(names)) < len(names) else _nothing():
        for n in names:
            zf.writestr(n, "x")
    with pytest.raises(DataError, match=words):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_archive_larger_than_the_free_disk_is_refused_before_extracting(tmp_path, monkeypatch):
    import shutil as sh

    from unlearnable.data import archive

    src = lb.flickr8k(tmp_path / "src", NAMES8K[:2])
    usage = sh.disk_usage(tmp_path)
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: usage._replace(free=100 << 20))
    with pytest.raises(DataError, match=r"extracting needs 0.00 GiB but .* has 0.10 GiB free"):
        safe_extract(lb.zip_folder(src, tmp_path / "a.zip"), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_safe_extract_keeps_a_normal_archive(tmp_path):
    src = lb.flickr8k(tmp_path / "src", NAMES8K[:2])
    info = safe_extract(lb.zip_folder(src, tmp_path / "a.zip"), tmp_path / "x")
    assert (tmp_path / "x" / "Images" / NAMES8K[1]).read_bytes() == (src / "Images" / NAMES8K[1]).read_bytes()
    assert info["members"] == 4 and len(info["sha256"]) == 64


def _paper(lists: str, **kw) -> SplitConfig:
    return SplitConfig(kind="paper", lists=lists, lists_dir=str(REPO / "config" / "splits"), **kw)


def _listed(name: str) -> list[str]:
    return (REPO / "config" / "splits" / f"{name}.txt").read_text().split()


@pytest.mark.slow
@pytest.mark.parametrize("lists", ["flickr8k", "flickr30k", "mscoco"])
def test_paper_split_on_full_size_stand_ins(tmp_path, lists):
    """Stand-ins with the real file names: the lists are applied exactly, the rest is train."""
    test, val = _listed(f"{lists}_test"), (_listed(f"{lists}_val") if lists != "mscoco" else [])
    if lists == "flickr8k":
        train = [f"{9000000 + i}_x.jpg" for i in range(40)]
        root = lb.flickr8k(tmp_path / "d", test + val + train)
    elif lists == "flickr30k":
        train = [f"{9000000 + i}.jpg" for i in range(40)]
        root = lb.flickr30k(tmp_path / "d", test + val + train, malformed_row=False)
    else:
        root = lb.coco2017(tmp_path / "d", [int(x) for x in test[:4000]] + list(range(900001, 900041)),
                           [int(x) for x in test[4000:]])
    summary = make_manifest(root, _paper(lists, val=20, require_all_listed=True), tmp_path / "m.parquet",
                            tmp_path / "q.json", LayoutConfig())
    df = mf.read_manifest(tmp_path / "m.parquet")
    per_image = df.drop_duplicates("image_id").set_index("image_id")["split"]
    expected_test = 5000 if lists == "mscoco" else 1000
    assert summary["splits"]["test"]["images"] == expected_test
    assert set(per_image[per_image == "test"].index) == {str(int(Path(x).stem)) if lists == "mscoco"
                                                         else Path(x).stem for x in test}
    assert summary["splits"]["val"]["images"] == (20 if lists == "mscoco" else 1000)
    assert summary["splits"]["train"]["images"] == 40 - (20 if lists == "mscoco" else 0)


def test_paper_split_checks_the_lists(tmp_path):
    ids = [Path(x).stem for x in _listed("flickr8k_test")[:10]] + [f"t{i}" for i in range(30)]
    split = assign_split(ids, _paper("flickr8k", val=5))
    assert sum(v == "test" for v in split.values()) == 10 and sum(v == "val" for v in split.values()) == 0
    with pytest.raises(DataError, match=r"flickr8k_test.txt: 990 of 1000 listed images are not in the dataset"):
        assign_split(ids, _paper("flickr8k", require_all_listed=True))
    with pytest.raises(DataError, match="none of the listed test images"):
        assign_split([f"t{i}" for i in range(30)], _paper("flickr8k"))
    with pytest.raises(ConfigError, match="split.lists"):
        assign_split(ids, SplitConfig(kind="paper"))


def test_caps_subsample_per_image_and_are_seeded():
    ids = [f"im{i}" for i in range(200)]
    cfg = SplitConfig(val=20, test=30, seed=4, max_train_images=50, max_test_images=10)
    a, b = assign_split(ids, cfg), assign_split(ids, cfg)
    assert a == b
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test", None)}
    assert counts == {"train": 50, "val": 20, "test": 10, None: 120}


def test_capped_images_leave_the_manifest(tmp_path):
    root = lb.flickr8k(tmp_path / "f8k", NAMES8K)
    summary = make_manifest(root, SplitConfig(val=0, test=2, max_train_images=3), tmp_path / "m.parquet",
                            tmp_path / "q.json")
    df = mf.read_manifest(tmp_path / "m.parquet")
    assert df["image_id"].nunique() == 5 and summary["splits"]["train"]["images"] == 3
    assert sorted(df["image_index"].unique()) == list(range(5))  # store rows stay dense


def test_layout_is_detected_or_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known layout found"):
        read_dataset(tmp_path / "empty")
    root = lb.flickr8k(tmp_path / "f8k", NAMES8K[:2])
    shutil.rmtree(root / "Images")
    with pytest.raises(DataError, match="none of the images named in captions.txt"):
        read_dataset(root)
    with pytest.raises(ConfigError, match="source.layout"):
        LayoutConfig(kind="flickr9k")


def test_generic_csv_broken_row(tmp_path, shapes_root):
    root = tmp_path / "g"
    shutil.copytree(shapes_root, root)
    with open(root / "captions.csv", "a") as f:
        f.write("shape_000001.png,a caption,an extra field\n")
    with pytest.raises(DataError, match=r"captions.csv: row 302: expected 2 fields, got 3"):
        read_dataset(root)
    rows, q = read_dataset(root, on_bad_sample="skip")
    assert len(rows) == 300 and q.dropped == {"malformed_row": 1}


def _repeat_a_caption(root: Path, kind: str) -> None:
    """Write one caption of the first photo a second time, as two annotators of a real dataset did."""
    if kind == "coco2017":
        ann = root / "coco2017/annotations/captions_train2017.json"
        data = json.loads(ann.read_text())
        data["annotations"].append({**data["annotations"][0], "id": 10_000})
        ann.write_text(json.dumps(data))
        return
    cap = next(root.rglob("captions.txt" if kind == "flickr8k" else "results.csv"))
    lines = cap.read_text().splitlines()
    cap.write_text("\n".join(lines + [lines[1].replace("| 0|", "| 5|")]) + "\n")


@pytest.mark.parametrize("kind, caption_files, image_dirs", [
    ("flickr8k", ["captions.txt"], ["Images"]),
    ("flickr30k", ["flickr30k_images/results.csv"], ["flickr30k_images/flickr30k_images"]),
    ("coco2017", ["coco2017/annotations/captions_train2017.json", "coco2017/annotations/captions_val2017.json"],
     ["coco2017/train2017", "coco2017/val2017"]),
])
def test_every_kaggle_reader_keeps_a_repeated_caption_and_records_the_layout_it_read(
        tmp_path, kind, caption_files, image_dirs):
    root = {"flickr8k": lambda: lb.flickr8k(tmp_path / "d", NAMES8K),
            "flickr30k": lambda: lb.flickr30k(tmp_path / "d", NAMES8K, malformed_row=False),
            "coco2017": lambda: lb.coco2017(tmp_path / "d", [9, 25, 30, 31, 32], [73, 312, 313])}[kind]()
    _repeat_a_caption(root, kind)
    summary = make_manifest(root, SplitConfig(val=1, test=2), tmp_path / "m.parquet", tmp_path / "q.json",
                            on_bad_sample="fail")
    assert summary["rows_kept"] == summary["rows_read"] == 41 and summary["dropped"] == {}
    assert summary["repeated"] == {"repeated_caption": 1}
    assert json.loads((tmp_path / "q.json").read_text())["layout"] == {
        "kind": kind, "caption_files": caption_files, "image_dirs": image_dirs}


def test_the_generic_layout_records_the_files_it_read(tmp_path, shapes_root):
    summary = make_manifest(shapes_root, SplitConfig(val=1, test=2), tmp_path / "m.parquet", tmp_path / "q.json")
    assert summary["layout"] == {"kind": "generic", "caption_files": ["captions.csv"], "image_dirs": ["images"]}
    assert summary["layout_config"]["kind"] == "auto"
