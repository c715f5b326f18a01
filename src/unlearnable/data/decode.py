"""Decode any image file into the RGB uint8 pixels a person sees when they open it.

PIL's plain `convert("RGB")` is wrong for several common files: it ignores EXIF orientation (phone JPEGs
come out sideways), clips 16-bit and float images instead of scaling them (a mid-grey 16-bit PNG becomes
white), and drops transparency onto black. The rules here, used by every reader of the project:

- EXIF orientation is applied (`ImageOps.exif_transpose`).
- 16-bit and 32-bit integer images (`I;16*`, `I`) hold 0..65535 and are scaled by 255/65535.
- Float images (`F`) hold 0..1 (scaled by 255) or, where any value passes 1, 0..255 as a scanner or a
  numpy export writes them (taken as they are); values outside are clipped. `float_range` says which.
- Images with transparency (alpha, or a palette's transparent colour) are composited on white
  (`BACKGROUND`), as a browser shows them on a blank page.
- Everything else (palette, grey, CMYK, YCbCr, ...) goes through PIL's own conversion.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

BACKGROUND = (255, 255, 255)


def float_range(pixels: np.ndarray) -> str:
    """'0..1' or '0..255': how a float image's values are read (0..255 where any value passes 1)."""
    return "0..255" if np.nanmax(pixels, initial=0.0) > 1.0 else "0..1"


def to_rgb(im: Image.Image) -> Image.Image:
    """An opened PIL image -> an 8-bit RGB image, oriented, scaled and composited as described above.

    An RGB image is oriented in place and returned itself, not copied (a 64 MP photo is 192 MB a copy): use
    the result before closing the file it came from."""
    im.load()
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.rint(np.clip(a, 0, 65535) * (255 / 65535)).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im).astype(np.float64))
        scale = 255.0 if float_range(a) == "0..1" else 1.0
        return Image.fromarray(np.rint(np.clip(a * scale, 0, 255)).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode in ("L", "1") and "transparency" in im.info:
        return to_rgb(im.convert("LA"))
    if mode == "RGB" and "transparency" in im.info:
        return to_rgb(im.convert("RGBA"))
    return im if mode == "RGB" else im.convert("RGB")
