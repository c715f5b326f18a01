"""The colour-domain family: a smooth per-image colour transform, optimised to minimise the error, alone and
with spatial noise; bounded so that no shape changes the colour its caption names."""
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnable.clip.models import ModelSpec
from unlearnable.data.image_store import open_image_store
from unlearnable.data.shapes import COLOURS
from unlearnable.protect.config import method_config
from unlearnable.protect.pgd import colour_bounds, colour_shift
from unlearnable.protect.run import protect


def _unit_pixels(train, store, out):
    units = pd.read_parquet(out / "units.parquet").drop_duplicates("unit").sort_values("unit")
    rows = train.set_index("caption_id").loc[units["caption_id"], "image_index"].to_numpy()
    return open_image_store(store)[rows].astype(np.float32)


@pytest.mark.parametrize("kind, eps", [("strong_em", 0), ("strong_em", 4), ("random_noise", 0)])
def test_the_colour_branch_is_an_affine_colour_map_per_image_plus_the_spatial_noise(shapes_store, tmp_path, kind, eps):
    df, store = shapes_store
    train = df[df.split == "train"].reset_index(drop=True)
    spec = {"kind": kind, "granularity": "image", "eps": eps, "colour_eps": 8}
    if kind == "strong_em":
        spec.update(rounds=2, surrogate_steps=2, pgd_steps=3, batch_size=16)
    protect(train, store, ModelSpec("tiny-vit"), method_config(spec), 0, "cpu", tmp_path / "p")
    noise = np.load(tmp_path / "p" / "noise.npy").astype(np.float32)
    colour = np.load(tmp_path / "p" / "colour.npy")
    bound = colour_bounds(8).numpy()
    assert colour.shape == (len(noise), 2, 3) and (np.abs(colour) <= bound).all()
    assert (colour == np.round(colour)).all() and np.abs(colour).max() > 0  # moved, in whole units
    x = torch.from_numpy(_unit_pixels(train, store, tmp_path / "p")).permute(0, 3, 1, 2)
    shift = colour_shift(x, torch.from_numpy(colour)).permute(0, 2, 3, 1).numpy()
    assert np.abs(shift).max() <= 8
    spatial = noise - shift  # what is left is the spatial branch, within its own budget
    assert np.abs(spatial).max() <= eps
    if eps:
        assert np.abs(spatial).max() == eps  # and it was optimised too


def test_no_shape_changes_the_colour_its_caption_names_under_the_largest_colour_shift():
    """Bound: colour_eps <= 16 moves no channel more than 16/255, and every two colours the captions name
    differ by more than twice that in some channel, so the nearest named colour of every shape pixel stays
    its own (under any shift of the bound, not only the optimised one)."""
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    gap = min(np.abs(a - b).max() for a, b in itertools.combinations(palette, 2))
    assert gap > 2 * 16
    worst = colour_bounds(16).sum(0).numpy()  # gain + offset, per channel
    for c, signs in itertools.product(range(len(palette)), itertools.product((-1, 1), repeat=3)):
        shifted = np.clip(palette[c] + np.array(signs) * worst, 0, 255)
        assert np.abs(palette - shifted).max(1).argmin() == c
