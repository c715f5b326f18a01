"""Snakemake adapter: write results/report/ from the summary table, records, protections and published data."""
from pathlib import Path

import pandas as pd

from unlearnable.provenance import versions
from unlearnable.report.html import write_report
from unlearnable.report.stats import RETAINED_METRIC
from unlearnable.workflow.jobrunner import run_job

smk = snakemake  # noqa: F821
run_job(smk.log[0], 1, lambda: write_report(
    pd.read_parquet(smk.input.summary), Path(smk.output.html).parent, [Path(p) for p in smk.input.records],
    [Path(p) for p in smk.input.protections], list(smk.params.gallery),
    {"config": dict(smk.params.config), "versions": versions()}, smk.params.metric or RETAINED_METRIC),
    where=smk.output[0])
