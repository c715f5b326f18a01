"""How visible a protection is: the published images against the clean ones, at the same resolution.

PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, per channel, then
averaged) per image, and the largest per-channel mean shift in 1/255: what a colour transform moves, which a
per-pixel measure averages away. Every figure is the mean over images, except the shift, whose largest
value over images is kept too.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _window(device) -> torch.Tensor:
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    g = (g / g.sum()).float()
    return (g[:, None] * g[None, :]).expand(3, 1, 11, 11).to(device)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image SSIM of two [N,3,H,W] batches in 0..255 (valid windows only; images under 11 px are padded
    by reflection)."""
    if min(a.shape[-2:]) < 11:
        pad = [(11 - min(a.shape[-2:]) + 1) // 2] * 4
        a, b = F.pad(a, pad, mode="reflect"), F.pad(b, pad, mode="reflect")
    w, c1, c2 = _window(a.device), (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, w, groups=3), F.conv2d(b, w, groups=3)
    var_a = F.conv2d(a * a, w, groups=3) - mu_a ** 2
    var_b = F.conv2d(b * b, w, groups=3) - mu_b ** 2
    cov = F.conv2d(a * b, w, groups=3) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


class Visibility:
    """Accumulates published vs clean uint8 NHWC batches; `result()` gives the figures."""

    def __init__(self):
        self.psnr, self.ssim, self.shift = [], [], []

    def add(self, clean: np.ndarray, published: np.ndarray) -> None:
        a = torch.from_numpy(clean).permute(0, 3, 1, 2).double()
        b = torch.from_numpy(published).permute(0, 3, 1, 2).double()
        mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
        self.psnr.append(torch.where(mse > 0, 10 * torch.log10(255 ** 2 / mse), torch.full_like(mse, float("inf"))))
        self.ssim.append(ssim(a.float(), b.float()).double())
        self.shift.append((b - a).mean(dim=(2, 3)).abs().amax(dim=1))

    def result(self) -> dict:
        if not self.psnr:
            return {}
        psnr, ssim_, shift = (torch.cat(x) for x in (self.psnr, self.ssim, self.shift))
        finite = psnr[torch.isfinite(psnr)]
        return {"psnr": float(finite.mean()) if len(finite) else float("inf"), "ssim": float(ssim_.mean()),
                "mean_shift": float(shift.mean()), "mean_shift_max": float(shift.max()), "images": len(psnr),
                "unchanged_images": int((~torch.isfinite(psnr)).sum())}
