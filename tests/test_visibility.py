"""Visibility of a protection: PSNR, SSIM and the largest per-channel mean shift, against the clean images."""
import numpy as np
import pytest
import torch

from unlearnable.protect.visibility import Visibility, ssim


@pytest.fixture(scope="module")
def clean():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32]
    base = np.stack([x * 6, y * 7, (x + y) * 3], -1).astype(np.float32)
    return np.stack([np.clip(base + rng.normal(0, 10, base.shape), 0, 255) for _ in range(4)]).astype(np.uint8)


def _add(clean, noise):
    return np.clip(clean.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def test_psnr_follows_the_noise_energy_and_identical_images_are_counted_apart(clean):
    v = Visibility()
    noise = np.where(np.random.default_rng(1).random(clean.shape) < 0.5, -4, 4).astype(np.int16)
    pub = _add(clean, noise)
    v.add(clean, pub)
    v.add(clean, clean)
    r = v.result()
    mse = ((pub.astype(float) - clean) ** 2).mean(axis=(1, 2, 3))
    assert r["psnr"] == pytest.approx(np.mean(10 * np.log10(255 ** 2 / mse)))
    assert r["unchanged_images"] == 4 and r["images"] == 8


def test_ssim_is_one_for_equal_images_and_falls_with_noise(clean):
    a = torch.from_numpy(clean).permute(0, 3, 1, 2).float()
    assert torch.allclose(ssim(a, a), torch.ones(4))
    small = _add(clean, np.random.default_rng(2).integers(-4, 5, clean.shape))
    large = _add(clean, np.random.default_rng(2).integers(-32, 33, clean.shape))
    s = [float(ssim(a, torch.from_numpy(x).permute(0, 3, 1, 2).float()).mean()) for x in (small, large)]
    assert 1 > s[0] > s[1] > 0


def test_a_colour_shift_shows_in_the_mean_shift_but_zero_mean_noise_does_not(clean):
    shifted, noisy = Visibility(), Visibility()
    offset = np.zeros(clean.shape, dtype=np.int16)
    offset[..., 2] = 6  # blue up 6/255 everywhere
    shifted.add(clean, _add(clean, offset))
    flip = np.where((np.indices(clean.shape[1:3]).sum(0) % 2)[None, ..., None] == 0, -6, 6).astype(np.int16)
    noisy.add(clean, _add(clean, np.broadcast_to(flip, clean.shape)))
    assert shifted.result()["mean_shift_max"] == pytest.approx(6, abs=0.3)
    assert noisy.result()["mean_shift_max"] < 0.5
    assert noisy.result()["psnr"] < shifted.result()["psnr"] + 1  # PSNR cannot tell the two apart
