import numpy as np
import pandas as pd

from unlearnable.cli import main
from unlearnable.image_store import load_square


def test_protect_a_folder_end_to_end(shapes_root, tmp_path, capsys):
    out = tmp_path / "published"
    rc = main(["protect", str(shapes_root), str(out), "--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "2",
               "--hotflip-rounds", "1", "--candidates", "2", "--granularity", "image", "--batch-size", "32",
               "--device", "cpu"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [".unlearnable-output.json", "private", "published"]
    assert {"noise.npy", "triggers.npy", "protection.json"} <= {p.name for p in (out / "private").iterdir()}
    caps = pd.read_csv(out / "published" / "captions.csv")
    orig = pd.read_csv(shapes_root / "captions.csv")
    assert len(caps) == len(orig) and (caps["image"] == orig["image"]).all()
    # every caption gained a 3-word trigger prefix, the same one for all captions of an image
    prefix = caps["caption"].str.split().str[:3].str.join(" ")
    assert (caps["caption"].str.split().str.len() == orig["caption"].str.split().str.len() + 3).all()
    assert (prefix.groupby(caps["image"]).nunique() == 1).all()
    # images stay within 8/255 of the (resized) originals
    name = caps["image"].iloc[0]
    clean = load_square(shapes_root / "images" / name, 32).astype(int)
    prot = load_square(out / "published" / "images" / name, 32).astype(int)
    assert 0 < np.abs(prot - clean).max() <= 8


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["protect", str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope: dataset folder not found" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
