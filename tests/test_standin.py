"""The Flickr8k stand-in: Flickr8k's Kaggle layout, the paper's file names, Flickr-like JPEGs."""
import subprocess

import numpy as np
from conftest import REPO
from PIL import Image

from unlearnable.data.sources import LayoutConfig, detect_layout, read_dataset
from unlearnable.data.splits import SplitConfig, assign_split
from unlearnable.data.standin import SIZES, StandinConfig, file_names, write_standin


def test_standin_has_flickr8k_layout_and_the_papers_names_in_proportion(tmp_path):
    cfg = StandinConfig(n_images=81)  # 1/100 of Flickr8k: 10 val and 10 test names from the paper's lists
    root = write_standin(tmp_path / "f8k", cfg, workers=1)
    assert detect_layout(root) == "flickr8k"
    assert sorted(p.name for p in root.iterdir()) == ["Images", "captions.txt"]
    rows, quality = read_dataset(root, LayoutConfig(kind="flickr8k"))
    assert rows["image_id"].nunique() == 81 and len(rows) == 81 * 5
    split = assign_split(rows["image_id"].tolist(), SplitConfig(kind="paper", lists="flickr8k",
                                                                lists_dir=str(REPO / "config/splits")))
    kinds = list(split.values())
    assert kinds.count("val") == 10 and kinds.count("test") == 10 and kinds.count("train") == 61
    names = sorted((root / "Images").iterdir())
    sizes = {s for s, _ in SIZES}
    for path in names[:20]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size in sizes
            px = np.asarray(im, dtype=np.int16)
        assert np.abs(np.diff(px, axis=1)).mean() > 3  # textured like a photo, not flat colour


def test_standin_names_are_unique_and_stable():
    a, b = file_names(StandinConfig(n_images=8091)), file_names(StandinConfig(n_images=8091))
    assert a == b and len(set(a)) == 8091
    listed = set((REPO / "config/splits/flickr8k_test.txt").read_text().split())
    assert listed <= set(a)  # full size holds every listed test image: require_all_listed applies


def test_rehearsal_plans_the_papers_dag(tmp_path):
    from test_grid import job_counts
    from wf import SNAKEMAKE

    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(tmp_path), "-n",
                          "--configfile", str(REPO / "config/grids/rehearsal.yaml")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert job_counts(res.stdout) == {"generate": 1, "tracking_store": 1, "manifest": 1, "image_store": 1,
                                      "train_clean": 1, "protect": 1, "publish": 1, "retrain": 1,
                                      "summary": 1, "report": 1, "all": 1, "total": 11}
