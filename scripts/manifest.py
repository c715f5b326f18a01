"""Snakemake adapter: read a dataset folder into a validated manifest and a data-quality summary."""
from unlearnable.jobs import make_manifest
from unlearnable.jobrunner import run_job
from unlearnable.manifest import GenericLayout, SplitConfig

smk = snakemake  # noqa: F821
ds = smk.params.dataset
layout = GenericLayout(**{k: v for k, v in ds["source"].items() if k in GenericLayout.__dataclass_fields__})
run_job(smk.log[0], 1, lambda: make_manifest(smk.input[0], SplitConfig(**ds["split"]), smk.output.manifest,
                                             smk.output.quality, layout, ds["on_bad_sample"]))
