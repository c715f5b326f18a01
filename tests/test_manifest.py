import shutil

import pytest

from unlearnable import ConfigError, DataError
from unlearnable.data import manifest as mf
from unlearnable.data.sources import LayoutConfig, read_dataset
from unlearnable.data.splits import SplitConfig, assign_split
from unlearnable.workflow.jobs import make_manifest


@pytest.fixture
def data(shapes_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(shapes_root, root)
    return root


def _manifest(root, **kw):
    rows, q = read_dataset(root, **kw)
    return mf.build_manifest(rows, assign_split(rows["image_id"].tolist(), SplitConfig(val=6, test=12))), q


def test_manifest_is_valid_and_split_per_image(data):
    table, _ = _manifest(data)
    df = table.to_pandas()
    assert df["image_id"].nunique() == 60 and len(df) == 300
    assert df.groupby("image_id")["split"].nunique().max() == 1  # no image in two splits
    assert (df.drop_duplicates("image_id")["split"].value_counts().to_dict()
            == {"train": 42, "test": 12, "val": 6})
    assert df["caption_id"].is_unique
    assert sorted(df["image_index"].unique()) == list(range(60))


def test_split_is_seeded():
    paths = [f"images/{i}.png" for i in range(100)]
    a = assign_split(paths, SplitConfig(val=10, test=10, seed=1))
    b = assign_split(paths, SplitConfig(val=10, test=10, seed=1))
    c = assign_split(paths, SplitConfig(val=10, test=10, seed=2))
    assert a == b and a != c
    with pytest.raises(ConfigError, match="split"):
        assign_split(paths, SplitConfig(val=50, test=50))


def _line_of(data, image):
    lines = (data / "captions.csv").read_text().splitlines()
    return next(i + 1 for i, ln in enumerate(lines) if ln.startswith(image))


def test_train_parts_are_seeded_disjoint_halves_of_train_and_keep_val_and_test():
    ids = [f"img{i:03d}" for i in range(101)]
    whole = assign_split(ids, SplitConfig(val=10, test=20, seed=4))
    parts = {p: assign_split(ids, SplitConfig(val=10, test=20, seed=4, train_part=p)) for p in ("pretrain", "owner")}
    train = {i for i, s in whole.items() if s == "train"}
    halves = {p: {i for i, s in part.items() if s == "train"} for p, part in parts.items()}
    assert halves["pretrain"] | halves["owner"] == train and not halves["pretrain"] & halves["owner"]
    assert (len(halves["pretrain"]), len(halves["owner"])) == (36, 35)  # 71 train images: the odd one to pretrain
    assert sorted(halves["pretrain"]) != sorted(train)[:36]  # drawn, not the first names
    for part in parts.values():  # val and test untouched; the other half left out of the manifest
        assert {i: s for i, s in part.items() if s in ("val", "test")} == {
            i: s for i, s in whole.items() if s in ("val", "test")}
    other = assign_split(ids, SplitConfig(val=10, test=20, seed=5, train_part="owner"))
    assert {i for i, s in other.items() if s == "train"} != halves["owner"]
    with pytest.raises(ConfigError, match="split.train_part"):
        assign_split(ids, SplitConfig(train_part="half"))


def test_missing_image_names_file_and_row(data):
    (data / "images" / "shape_000007.png").unlink()
    with pytest.raises(DataError) as e:
        _manifest(data)
    msg = str(e.value)
    assert "shape_000007.png" in msg and f"row {_line_of(data, 'shape_000007.png')}" in msg
    assert "\n" not in msg


def test_undecodable_and_truncated_images(data):
    (data / "images" / "shape_000003.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="shape_000003.png.*cannot decode"):
        _manifest(data)
    (data / "images" / "shape_000003.png").unlink()
    shutil.copy(data / "images" / "shape_000004.png", data / "images" / "shape_000003.png")
    full = (data / "images" / "shape_000005.png").read_bytes()
    (data / "images" / "shape_000005.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="shape_000005.png"):
        _manifest(data)


def test_empty_caption_names_row_and_skip_mode_counts_it(data):
    lines = (data / "captions.csv").read_text().splitlines()
    lines[10] = lines[10].split(",")[0] + ',"   "'
    (data / "captions.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"captions.csv: row 11: empty caption"):
        _manifest(data)
    table, q = _manifest(data, on_bad_sample="skip")
    assert table.num_rows == 299 and q.dropped == {"empty_caption": 1}


def test_a_repeated_caption_of_one_image_is_kept_and_counted_under_both_settings(data):
    """Real datasets repeat a caption of a photo (Flickr8k: 10 rows); that is data, never a bad sample."""
    text = (data / "captions.csv").read_text()
    (data / "captions.csv").write_text(text + text.splitlines()[1] + "\n")
    for on_bad_sample in ("fail", "skip"):
        table, q = _manifest(data, on_bad_sample=on_bad_sample)
        assert table.num_rows == 301 and q.dropped == {} and q.repeated == {"repeated_caption": 1}
        assert q.examples["repeated_caption"].endswith("captions.csv: row 302: repeats " + str(data / "captions.csv")
                                                       + ": row 2 (kept)")


def test_missing_column_is_named(data):
    with pytest.raises(DataError, match="missing column 'text'"):
        read_dataset(data, LayoutConfig(caption_column="text"))


def test_failed_manifest_leaves_no_output(data, tmp_path):
    (data / "images" / "shape_000001.png").unlink()
    out = tmp_path / "out" / "manifest.parquet"
    with pytest.raises(DataError):
        make_manifest(data, SplitConfig(val=6, test=12), out, tmp_path / "out" / "quality.json")
    assert not out.exists()


def test_quality_summary(data, tmp_path):
    summary = make_manifest(data, SplitConfig(val=6, test=12), tmp_path / "m.parquet", tmp_path / "q.json")
    assert summary["captions_per_image"] == {"min": 5, "mean": 5.0, "max": 5}
    assert summary["splits"]["test"] == {"images": 12, "captions": 60}
    df = mf.read_manifest(tmp_path / "m.parquet")
    assert list(df.columns) == ["image_id", "image_path", "image_index", "caption_id", "caption", "split"]
