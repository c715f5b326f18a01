"""What an owner publishes reveals nothing but the protected pixels and the captions: no metadata but the ICC
profile in any format, and no local path in any file of the published folder."""
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageCms, TiffImagePlugin

from unlearnable.cli import main

FAST = ["--model", "tiny-vit", "--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "2", "--hotflip-rounds",
        "1", "--candidates", "2", "--batch-size", "8", "--device", "cpu"]
XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
       b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/'
       b'exif/1.0/" exif:GPSLatitude="48,51.5N" exif:GPSLongitude="2,17.4E"/></rdf:RDF></x:xmpmeta>'
       b'<?xpacket end="w"?>')
SECRET = "48,51.5N"  # the GPS position planted in every file, in EXIF, XMP and comments
TIFF_PRIVATE_TAGS = {700: "XMP", 33723: "IPTC", 34377: "Photoshop", 34665: "EXIF IFD", 34853: "GPS IFD",
                     270: "ImageDescription", 271: "Make", 315: "Artist"}


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # made once: it holds its creation time


def _exif(im: Image.Image) -> Image.Exif:
    exif = im.getexif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x013B] = "Jane Owner"  # Artist
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPSLatitude
    return exif


def _write(path: Path, fmt: str, i: int) -> None:
    rng = np.random.default_rng(i)
    im = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif, icc = _exif(im), ICC
    if fmt == "JPEG":
        im.save(path, "JPEG", quality=90, exif=exif, icc_profile=icc, comment=f"taken at {SECRET}", xmp=XMP)
    elif fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        text = PngInfo()
        text.add_text("Comment", f"taken at {SECRET}")
        text.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(path, "PNG", exif=exif, icc_profile=icc, pnginfo=text)
    elif fmt == "WEBP":
        im.save(path, "WEBP", lossless=True, exif=exif, icc_profile=icc, xmp=XMP)
    else:
        ifd = TiffImagePlugin.ImageFileDirectory_v2()
        ifd[700] = XMP
        ifd.tagtype[700] = 1  # BYTE
        ifd[33723] = f"IPTC caption at {SECRET}".encode()
        ifd.tagtype[33723] = 7
        ifd[34377] = f"8BIM Photoshop block at {SECRET}".encode()
        ifd.tagtype[34377] = 7
        ifd[270] = f"taken at {SECRET}"
        im.save(path, "TIFF", tiffinfo=ifd, exif=exif, icc_profile=icc)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("private-owner") / "photos"
    (root / "images").mkdir(parents=True)
    names = []
    for i, (fmt, suffix) in enumerate([("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tif")] * 3):
        names.append(f"p{i}{suffix}")
        _write(root / "images" / names[-1], fmt, i)
    pd.DataFrame({"image": names, "caption": [f"photo number {i} of a red thing" for i in range(len(names))]}).to_csv(
        root / "captions.csv", index=False)
    for planted in names[:4]:  # the fixture itself carries what must not be published
        assert SECRET.encode() in (root / "images" / planted).read_bytes() or planted.endswith(".png")
    out = root.parent / "out"
    assert main(["protect", str(root), str(out), *FAST]) == 0
    return root, out / "published", names


def test_published_images_hold_no_metadata_but_the_icc_profile(published):
    root, pub, names = published
    for name in names:
        data = (pub / "images" / name).read_bytes()
        assert SECRET.encode() not in data and b"Jane Owner" not in data and b"PhoneMaker" not in data, name
        assert b"adobe:ns:meta" not in data, name
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "TIFF" or not im.getexif(), (name, dict(im.getexif()))  # TIFF: its IFD0 is EXIF
            assert im.info.get("icc_profile") == ICC, name  # colours are shown as in the original
            assert not {"exif", "comment", "xmp", "XML:com.adobe.xmp", "Comment"} & set(im.info), (name, im.info)
            if im.format == "TIFF":
                kept = {TIFF_PRIVATE_TAGS[t] for t in TIFF_PRIVATE_TAGS if t in im.tag_v2}
                assert not kept, (name, kept)


def test_no_file_of_the_published_folder_names_a_local_path(published):
    root, pub, _ = published
    for f in pub.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for local in (str(root), str(root.parent), str(Path.home())):
                assert local.encode() not in data, (f, local)


def test_a_model_size_publication_names_no_local_path(published, tmp_path):
    root, _, _ = published
    out = tmp_path / "model-size"
    assert main(["protect", str(root), str(out), *FAST, "--size", "model"]) == 0
    texts = [f for f in (out / "published").rglob("*") if f.suffix in (".json", ".csv", ".parquet")]
    assert any(f.name == "export.json" for f in texts) and any(f.name == "images.json" for f in texts)
    for f in texts:
        data = f.read_bytes()
        assert str(tmp_path).encode() not in data and str(root).encode() not in data, f
    assert json.loads((out / "published" / "export.json").read_text())["eps"] == 8
