"""The real Flickr8k (`../shared/data/flickr8k-224`, read-only): the paper's settings read it as shipped, and the
owner's command protects a subset of its photos. Skipped, with the reason, where the copy is absent."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from unlearnable.cli import main
from unlearnable.data.sources import LayoutConfig
from unlearnable.data.splits import SplitConfig
from unlearnable.workflow.jobs import make_manifest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "flickr8k-224"
pytestmark = pytest.mark.skipif(not (REAL / "captions.txt").is_file(),
                                reason=f"the real Flickr8k is not at {REAL} (a fresh clone has no ../shared)")


def test_the_paper_settings_read_the_real_flickr8k_and_count_its_ten_repeated_captions(tmp_path):
    """With `config/grids/paper.yaml`'s own split and `on_bad_sample`, the real dataset builds its manifest."""
    paper = yaml.safe_load((REPO / "config/grids/paper.yaml").read_text())["datasets"]["flickr8k"]
    assert paper["on_bad_sample"] == "fail"
    summary = make_manifest(REAL, SplitConfig(**paper["split"]), tmp_path / "m.parquet", tmp_path / "q.json",
                            LayoutConfig(kind="auto"), on_bad_sample=paper["on_bad_sample"])
    assert summary["rows_read"] == summary["rows_kept"] == 40_455 and summary["dropped"] == {}
    assert summary["repeated"] == {"repeated_caption": 10}
    assert {s: v["images"] for s, v in summary["splits"].items()} == {"train": 6091, "val": 1000, "test": 1000}
    assert summary["layout"] == {"kind": "flickr8k", "caption_files": ["captions.txt"], "image_dirs": ["Images"]}


def _subset(dest: Path, n: int) -> pd.DataFrame:
    """The first `n` photos of the real captions file, plus one whose caption is repeated, as a Flickr8k copy."""
    caps = pd.read_csv(REAL / "captions.txt")
    names = list(dict.fromkeys(caps["image"]))[:n] + ["2305437797_e6c3460190.jpg"]
    sub = caps[caps["image"].isin(names)]
    (dest / "Images").mkdir(parents=True)
    for name in names:
        shutil.copyfile(REAL / "Images" / name, dest / "Images" / name)
    sub.to_csv(dest / "captions.txt", index=False)
    return sub


def test_the_owners_command_protects_real_photos_keeping_every_row_and_within_its_budget(tmp_path):
    sub = _subset(tmp_path / "photos", 23)
    out = tmp_path / "out"
    assert main(["protect", str(tmp_path / "photos"), str(out), "--method", "em", "--rounds", "1",
                 "--surrogate-steps", "2", "--pgd-steps", "2", "--batch-size", "12", "--device", "cpu"]) == 0
    pub = pd.read_csv(out / "published" / "captions.csv")
    assert len(pub) == len(sub) == 120 and list(pub["image"]) == list(sub["image"])  # the repeated row included
    assert list(pub["caption"]) == list(sub["caption"])  # em: captions as written
    export = json.loads((out / "published" / "export.json").read_text())
    assert export["files"] == 24 and export["changed"] == []
    gaps = []
    for name in sub["image"].unique():
        clean = np.asarray(Image.open(tmp_path / "photos" / "Images" / name).convert("RGB"), dtype=np.int16)
        with Image.open(out / "published" / "images" / name) as im:
            assert im.format == "JPEG" and im.size == (224, 224)
            gaps.append(np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - clean))
    gap = np.stack(gaps)
    # 8/255 of noise, then the JPEG re-encoding at quality 95: the noise is there, and bounded
    assert gap.mean() > 1 and np.percentile(gap, 99) <= 8 + 6
