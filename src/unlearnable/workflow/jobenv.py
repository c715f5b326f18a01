"""The environment every job of the workflow inherits."""
from __future__ import annotations

import os


def put_library_on_job_path(src: str) -> None:
    """Jobs (scripts run by Snakemake, also in a `--sdm conda` environment that holds only dependencies) import
    this checkout's library: its `src` goes first on their PYTHONPATH, whatever the user had after it."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
