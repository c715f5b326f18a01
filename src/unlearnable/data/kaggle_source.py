"""Download a dataset with the official Kaggle client, extract it safely and check it is complete.

The `kaggle` package authenticates when imported, so it is imported here only, lazily, with its output
swallowed; missing or refused credentials become one help line. Credential values never reach a message.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import DataError, UnlearnableError
from ..atomic import atomic_path
from .archive import safe_extract
from .sources import LayoutConfig, parse_layout

log = logging.getLogger(__name__)

MARKER = ".unlearnable-download.json"
# The paper's datasets on Kaggle: layout and the number of captioned images a complete copy holds.
KNOWN = {
    "adityajn105/flickr8k": ("flickr8k", 8091),
    "hsankesara/flickr-image-dataset": ("flickr30k", 31783),
    "awsaf49/coco-2017-dataset": ("coco2017", 123287),
}
_SECRET_VARS = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")


class CredentialsError(UnlearnableError):
    pass


@dataclass(frozen=True)
class KaggleSource:
    dataset: str  # owner/slug
    layout: str = "auto"
    expected_images: int | None = None  # default: the full dataset's count for the known handles

    def expected(self) -> int | None:
        return self.expected_images if self.expected_images is not None else KNOWN.get(self.dataset, (None, None))[1]

    def layout_kind(self) -> str:
        return self.layout if self.layout != "auto" else KNOWN.get(self.dataset, ("auto", None))[0]


def help_line(name: str, dataset: str, reason: str) -> str:
    return (f"dataset '{name}' ({dataset}): {reason}. Set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY), "
            f"or save your token to ~/.kaggle/access_token (or kaggle.json to ~/.kaggle or KAGGLE_CONFIG_DIR); "
            f"or use a copy on disk: datasets.{name}.source = {{kind: local, path: /path/to/copy}}")


def scrub(text: str) -> str:
    """Remove credential values from text that may be shown (messages from the client or the server)."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _client(name: str, dataset: str):
    # the client creates its config folder with a bare makedirs when its class is defined: parallel download
    # jobs race there (FileExistsError); create the folder it will pick first
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR") or (home / ".kaggle" if (home / ".kaggle").exists() else xdg)
    Path(config_dir).mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            from kaggle.api.kaggle_api_extended import KaggleApi  # runs kaggle/__init__, which authenticates

            api = KaggleApi()
            api.authenticate()
    except SystemExit:
        raise CredentialsError(help_line(name, dataset, "no Kaggle credentials found")) from None
    except Exception as e:
        raise _translate(e, name, dataset) from None
    logging.getLogger("kaggle").setLevel(logging.WARNING)
    return api


def _translate(e: Exception, name: str, dataset: str) -> UnlearnableError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403):
        return CredentialsError(help_line(name, dataset, f"Kaggle refused the credentials (HTTP {status})"))
    if status == 404:
        return DataError(f"dataset '{name}': Kaggle has no dataset {dataset!r} (HTTP 404)")
    detail = scrub(str(e).splitlines()[0] if str(e) else "")
    return DataError(f"dataset '{name}': download of {dataset} failed ({type(e).__name__}: {detail})")


def download(source: KaggleSource, dest: str | Path, name: str) -> dict:
    """Fetch, extract and verify into `dest`; a complete `dest` is kept as it is (idempotent).

    The zip waits in a hidden sibling folder until it has been extracted and verified, so an interrupted
    run resumes the download (the Kaggle client continues a partial file) and redoes the extraction.
    """
    dest = Path(dest)
    if (dest / MARKER).is_file():
        record = json.loads((dest / MARKER).read_text())
        log.info("%s: complete download of %s already present (%d images); nothing to fetch", dest,
                 source.dataset, record["images"])
        return record
    staging = dest.parent / f".{dest.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    api = _client(name, source.dataset)
    t0 = time.time()
    log.info("downloading %s from Kaggle into %s", source.dataset, staging)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.dataset_download_files(source.dataset, path=str(staging), quiet=True, unzip=False)
    except UnlearnableError:
        raise
    except Exception as e:
        raise _translate(e, name, source.dataset) from None
    archive = staging / f"{source.dataset.split('/')[1]}.zip"
    if not archive.is_file():
        raise DataError(f"dataset '{name}': the Kaggle client wrote no {archive.name} in {staging}")
    size = archive.stat().st_size
    log.info("downloaded %.1f MB in %.0f s", size / 1e6, time.time() - t0)
    with atomic_path(dest) as tmp:  # also removes an extraction that was cut short
        extracted = safe_extract(archive, tmp)
        record = {**verify(tmp, source, name), "kaggle_dataset": source.dataset, "archive": extracted,
                  "source": asdict(source), "seconds": time.time() - t0}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: %d images, %d captions verified", dest, record["images"], record["captions"])
    return record


def verify(root: Path, source: KaggleSource, name: str) -> dict:
    """The layout parses, and the images its caption files name are there, as many as a full copy has."""
    kind = source.layout_kind()
    rows, problems = parse_layout(root, LayoutConfig(kind=kind))
    referenced = sorted(set(rows["image_path"]))
    present = sum((root / p).is_file() for p in referenced)
    expected = source.expected()
    if present == 0:
        raise DataError(f"dataset '{name}': the download holds none of the images its caption files name")
    if expected is not None and present != expected:
        raise DataError(f"dataset '{name}': incomplete download: {present} images found, {expected} expected "
                        f"(set datasets.{name}.source.expected_images for a different copy)")
    if present < len(referenced):
        log.warning("%d of %d images named by the caption files are missing", len(referenced) - present,
                    len(referenced))
    return {"layout": kind if kind != "auto" else "auto", "images": present, "captions": len(rows),
            "referenced_images": len(referenced), "parse_problems": len(problems)}
