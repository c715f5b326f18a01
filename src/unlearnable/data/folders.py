"""The folders the stages hand each other, each a small type that owns its file names and the one reader and
writer of each record: a protection (what `protect` makes and the owner keeps), a published folder (what the
owner publishes), a defended copy (what a scraper trains on) and a trained run. No other module names these
files, so a folder's layout changes in one place (tests/test_folders.py holds the rest of the code to that).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import DataError
from ..atomic import write_json


class _Folder:
    RECORD: str  # the file written last: its presence says the folder is complete
    MANIFEST = "manifest.parquet"  # a published or defended folder's rows, and their images at model resolution
    STORE = "images.npy"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def record_path(self) -> Path:
        return self.path / self.RECORD

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def store_path(self) -> Path:
        return self.path / self.STORE

    @property
    def complete(self) -> bool:
        return self.record_path.is_file()

    def record(self) -> dict[str, Any]:
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{self.record_path}: unreadable ({type(e).__name__}: {e})") from None

    def write_record(self, meta: dict[str, Any]) -> None:
        """Written last, into the folder's temporary path, so a complete-looking folder is complete."""
        write_json(self.record_path, meta)


class ProtectionDir(_Folder):
    """The raw protection: the noise added to every unit (int8, 1/255), the trigger tokens, the colour
    transform where one was made, the unit of each training pair, and the record (config, seed, history)."""
    RECORD = "protection.json"
    NOISE = "noise.npy"
    TRIGGERS = "triggers.npy"
    COLOUR = "colour.npy"
    UNITS = "units.parquet"

    @property
    def noise_path(self) -> Path:
        return self.path / self.NOISE

    @property
    def triggers_path(self) -> Path:
        return self.path / self.TRIGGERS

    @property
    def colour_path(self) -> Path:
        return self.path / self.COLOUR

    @property
    def units_path(self) -> Path:
        return self.path / self.UNITS

    def noise(self):
        """The noise rows, memory-mapped (one row per unit)."""
        from .rowfile import RowFile

        return RowFile(self.noise_path)

    def triggers(self):
        import numpy as np

        return np.load(self.triggers_path, allow_pickle=False)

    def units(self):
        import pandas as pd

        return pd.read_parquet(self.units_path)

    def config_value(self, key: str):
        """One recorded setting of the method (`granularity`, `eps`, ...), or a one-line error naming it."""
        try:
            return self.record()["config"][key]
        except (DataError, KeyError, TypeError) as e:
            raise DataError(f"{self.record_path}: no recorded {key} ({type(e).__name__})") from None


class PublishedDir(_Folder):
    """What an owner publishes: images, captions, and the export record (how it was made, its visibility)."""
    RECORD = "export.json"

    def export_record_path(self) -> Path | None:
        """The export record of the folder a victim trains on: its own or, for a defended copy, that of the
        folder the copy was made from; None for a folder with neither (a clean copy)."""
        if self.complete:
            return self.record_path
        defended = DefendedDir(self.path)
        if defended.complete:
            source = PublishedDir(defended.source_store().parent)
            return source.record_path if source.complete else None
        return None

    def export_record(self) -> dict[str, Any]:
        """As `export_record_path`, read; `{}` where there is none."""
        path = self.export_record_path()
        return {} if path is None else PublishedDir(path.parent).record()


class DefendedDir(_Folder):
    """A folder after a scraper's defence: its images, captions and the defence record (the defence, the store
    it was made from, what it changed)."""
    RECORD = "defence.json"

    def source_store(self) -> Path:
        try:
            return Path(self.record()["source_store"])
        except (KeyError, TypeError) as e:
            raise DataError(f"{self.record_path}: no recorded source_store ({type(e).__name__})") from None


class RunDir:
    """A trained victim's run folder: its weights, training record and clean-test metrics (JSON and a row)."""
    FILES = {"model": "model.safetensors", "record": "train.json", "metrics": "metrics.json",
             "metrics_row": "metrics.parquet"}

    @classmethod
    def files(cls, run: str) -> dict[str, str]:
        """Every file of the run folder `run` (a path or a Snakemake pattern), by key."""
        return {key: f"{run}/{name}" for key, name in cls.FILES.items()}


class ReportDir:
    """The human-facing report: one self-contained page, each of its figures also as a file (so Snakemake's
    --report can list it) and the table of every cell."""
    FILES = {"html": "index.html", "recall": "recall.png", "curves": "training_curves.png",
             "transfer": "transfer_matrix.png", "trigger_lengths": "trigger_lengths.png",
             "heatmap": "retained_heatmap.png", "visibility": "visibility_scraper.png", "table": "results.csv"}

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, key: str) -> Path:
        return self.path / self.FILES[key]
