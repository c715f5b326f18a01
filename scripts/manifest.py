"""Snakemake adapter: read a dataset folder into a validated manifest and a data-quality summary."""
from unlearnable.data.sources import LayoutConfig
from unlearnable.data.splits import SplitConfig
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import make_manifest

smk = snakemake  # noqa: F821
ds = smk.params.dataset
layout = LayoutConfig(**smk.params.layout)
run_job(smk.log[0], 1, lambda: make_manifest(smk.input.root, SplitConfig(**smk.params.split), smk.output.manifest,
                                             smk.output.quality, layout, ds["on_bad_sample"]), where=smk.output[0])
