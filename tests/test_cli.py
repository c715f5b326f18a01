import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO
from unlearnable.cli import main
from unlearnable.data.image_store import load_square


def test_protect_a_folder_end_to_end(shapes_root, tmp_path, capsys):
    out = tmp_path / "published"
    rc = main(["protect", str(shapes_root), str(out), "--model", "tiny-vit", "--rounds", "1", "--surrogate-steps", "1",
               "--pgd-steps", "2",
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


FAST = ["--model", "tiny-vit", "--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "2", "--hotflip-rounds",
        "1", "--candidates", "2", "--batch-size", "16", "--device", "cpu"]


def test_protect_shows_a_progress_bar_and_selects_images(shapes_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["protect", str(shapes_root), str(out), *FAST, "--max-images", "20", "--progress"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"mem round 1/1: +\d+%\|.*\| \d+/\d+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(batch/s|s/batch)\]", err), \
        err[-2000:]
    assert len(list((out / "published" / "images").iterdir())) == 20
    assert pd.read_csv(out / "published" / "captions.csv")["image"].nunique() == 20


def test_protect_with_strong_em_publishes_captions_unchanged_and_noise_beyond_8(shapes_root, tmp_path):
    """The owner's noise-only choice: the kind's 16/255 holds through the CLI (its flags default to unset),
    and no trigger reaches the captions."""
    out = tmp_path / "out"
    assert main(["protect", str(shapes_root), str(out), "--method", "strong_em", "--model", "tiny-vit",
                 "--rounds", "1",
                 "--surrogate-steps", "1", "--pgd-steps", "3", "--step", "4", "--batch-size", "16", "--device", "cpu",
                 "--max-images", "16", "--size", "model"]) == 0
    meta = json.loads((out / "private" / "protection.json").read_text())
    assert meta["config"]["method"] == "strong_em" and meta["config"]["eps"] == 16 and meta["config"]["token_num"] == 0
    caps = pd.read_csv(out / "published" / "captions.csv")["caption"]
    assert len(caps) >= 16 and set(caps) <= set(pd.read_csv(shapes_root / "captions.csv")["caption"])  # verbatim
    assert 8 < np.abs(np.load(out / "private" / "noise.npy")).max() <= 16


def test_help_states_units_and_choices_are_validated(capsys):
    from unlearnable.cli import parser

    text = " ".join(parser()._subparsers._group_actions[0].choices["protect"].format_help().split())
    assert "L-inf noise budget, in units of 1/255" in text and "PGD step size, in units of 1/255" in text
    with pytest.raises(SystemExit):
        main(["protect", "a", "b", "--granularity", "pixel"])
    assert "invalid choice: 'pixel'" in capsys.readouterr().err


def _mixed_folder(root):
    """Differently sized JPEGs and PNGs, as a photographer's folder holds them."""
    from unlearnable.data.shapes import ShapesConfig, render_sample

    (root / "images").mkdir(parents=True)
    kinds = [((1024, 768), "jpg", "JPEG"), ((640, 480), "png", "PNG"), ((300, 500), "jpg", "JPEG")]
    rows, want = [], {}
    for i in range(12):
        img, caps = render_sample(i, ShapesConfig(image_size=64, seed=2))
        size, ext, fmt = kinds[i % 3]
        name = f"IMG_{i:04d}.{ext}"
        img.resize(size, Image.Resampling.BICUBIC).save(root / "images" / name, quality=90)
        want[name] = (size, fmt)
        rows += [(name, c) for c in caps]
    pd.DataFrame(rows, columns=["image", "caption"]).to_csv(root / "captions.csv", index=False)
    return want


def test_published_files_keep_name_size_and_format_and_reproduce_the_model_input(tmp_path):
    from unlearnable.data.image_store import build_image_store
    from unlearnable.data.manifest import build_manifest
    from unlearnable.data.sources import read_dataset
    from unlearnable.protect.export import protected_pixels

    want = _mixed_folder(tmp_path / "photos")
    out = tmp_path / "out"
    assert main(["protect", str(tmp_path / "photos"), str(out), *FAST]) == 0
    got = {}
    for p in (out / "published" / "images").iterdir():
        with Image.open(p) as im:
            got[p.name] = (im.size, im.format)
    assert got == want
    # independently: CLIP's view of each published file against the clean view plus the private noise
    rows, _ = read_dataset(tmp_path / "photos")
    table = build_manifest(rows, {i: "train" for i in rows["image_id"]}).to_pandas()
    store = np.load(build_image_store(table, tmp_path / "photos", tmp_path / "s.npy", 32))
    noise = np.load(out / "private" / "noise.npy")
    first = table.drop_duplicates("image_index").sort_values("image_index")
    gaps = [np.abs(load_square(out / "published" / "images" / Path(p).name, 32).astype(int)
                   - protected_pixels(store[i], noise[i]).astype(int)) for i, p in enumerate(first["image_path"])]
    gap = np.stack(gaps)
    assert np.abs(noise).max() > 0 and gap.mean() < 0.5 and np.percentile(gap, 99) <= 2
    meta = json.loads((out / "published" / "export.json").read_text())["clip_view_gap"]
    assert meta["mean"] == pytest.approx(gap.mean()) and meta["max"] == gap.max()
    # the original pixels moved by a bounded amount, as much as the noise needs
    for name in want:
        with Image.open(tmp_path / "photos" / "images" / name) as a, Image.open(out / "published/images" / name) as b:
            diff = np.abs(np.asarray(a.convert("RGB"), int) - np.asarray(b.convert("RGB"), int))
        assert 0 < diff.mean() < 8


def test_verify_prints_the_drop_on_the_owners_data(shapes_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["protect", str(shapes_root), str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["verify", str(shapes_root), str(out / "published"), "--epochs", "1", "--batch-size", "16",
                 "--test", "10", "--device", "cpu", "--json", str(tmp_path / "v.json")]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["test_images"] == 10 and result["train_images"] == 50
    rows = [ln for ln in printed.splitlines() if ln.startswith(("image -> text R@", "text -> image R@"))]
    assert len(rows) == 4  # R@1, where a small victim on real photos sits near chance, and R@10
    for key, label in (("i2t_r1", "image -> text R@1 "), ("t2i_r1", "text -> image R@1 "),
                       ("i2t_r10", "image -> text R@10 "), ("t2i_r10", "text -> image R@10 ")):
        c, p = result["clean"][key], result["published"][key]
        line = next(ln for ln in rows if ln.startswith(label)).split()
        assert [float(v) for v in line[-4:]] == pytest.approx([round(c, 1), round(p, 1), round(c - p, 1),
                                                               round(result["clean"]["chance_" + key], 2)], abs=0.051)


def test_verify_trains_the_victim_the_owners_defaults_were_chosen_against(monkeypatch, tmp_path):
    """Told nothing, `verify` reads the protection with the owner's model (64 px, learns real photos), not the
    32-px tiny-vit the protect command no longer uses; `--model` still chooses."""
    import unlearnable.owner.verify as road
    from unlearnable.owner.defaults import OWNER_MODEL

    seen = []

    def capture(clean, published, spec, *args, **kw):
        seen.append(spec.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(road, "verify", capture)
    for extra in ([], ["--model", "tiny-vit"]):
        assert main(["verify", str(tmp_path), str(tmp_path / "published"), *extra]) == 130
    assert seen == [OWNER_MODEL, "tiny-vit"]


def _protect_settings(monkeypatch, *flags):
    """What `unlearnable protect` would protect with: its config and surrogate, captured before any work."""
    import unlearnable.owner.protect_folder as road

    seen = {}

    def capture(dataset, out, cfg, spec, **kw):
        seen.update(cfg=cfg, spec=spec)
        raise KeyboardInterrupt  # stop here: the settings are what this test reads

    monkeypatch.setattr(road, "protect_folder", capture)
    assert main(["protect", "photos", "out", *flags]) == 130
    return seen["cfg"], seen["spec"]


def test_the_owners_command_defaults_to_the_settings_chosen_on_real_photos(monkeypatch):
    """Told nothing, the owner's command protects per image with the owner's method against small-rn-64 on the
    schedule it was measured with (owner/defaults.py); each method measured on real photos takes its own measured
    schedule, `--schedule reference` gives the reference's, another kind its own, and a flag wins."""
    from unlearnable.owner.defaults import OWNER_METHOD, OWNER_MODEL, OWNER_SCHEDULES
    from unlearnable.protect.config import ProtectConfig

    cfg, spec = _protect_settings(monkeypatch)
    assert spec.name == OWNER_MODEL == "small-rn-64" and cfg.method == OWNER_METHOD and cfg.granularity == "image"
    for method, schedule in OWNER_SCHEDULES.items():
        cfg, _ = _protect_settings(monkeypatch, "--method", method)
        assert {k: getattr(cfg, k) for k in schedule} == dict(schedule) and cfg.granularity == "image"
    cfg, _ = _protect_settings(monkeypatch, "--method", "mem")
    assert (cfg.rounds, cfg.surrogate_steps, cfg.lr, cfg.token_num) == (4, 30, 1e-3, 3)  # the grid's mem3_image
    cfg, _ = _protect_settings(monkeypatch, "--method", "robust_em")
    assert (cfg.surrogate_steps, cfg.lr, cfg.eps, cfg.noise_block) == (40, 1e-3, 16, 8)  # the grid's robust_em
    cfg, _ = _protect_settings(monkeypatch, "--method", "mem", "--schedule", "reference")
    assert (cfg.rounds, cfg.surrogate_steps, cfg.lr, cfg.granularity) == (
        ProtectConfig.rounds, ProtectConfig.surrogate_steps, ProtectConfig.lr, "image")
    cfg, _ = _protect_settings(monkeypatch, "--method", "em")
    assert (cfg.rounds, cfg.surrogate_steps) == (5, 50)  # em's own schedule, not MEM's
    cfg, spec = _protect_settings(monkeypatch, "--method", "mem", "--rounds", "2", "--model", "tiny-vit",
                                  "--granularity", "pair")
    assert (cfg.rounds, cfg.surrogate_steps, spec.name, cfg.granularity) == (2, 30, "tiny-vit", "pair")


def test_the_owners_schedules_are_the_ones_the_real_photo_grid_measured():
    """The README's real-photo figures for the owner's command come from these grid cells: a schedule edited
    on one side only would make them describe another protection."""
    import yaml

    from unlearnable.owner.defaults import owner_settings
    from unlearnable.protect.config import method_config

    methods = yaml.safe_load((REPO / "config/grids/flickr8k-real.yaml").read_text())["methods"]
    for cell, kind in (("mem3_image", "mem"), ("robust_em", "robust_em")):
        assert method_config({"kind": kind, **owner_settings(kind)}) == method_config(methods[cell]), cell
