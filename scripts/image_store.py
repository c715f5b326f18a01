"""Snakemake adapter: decode a dataset's images once into the image store (see data/image_store.py)."""
from unlearnable.workflow.jobrunner import run_job
from unlearnable.workflow.jobs import make_image_store

smk = snakemake  # noqa: F821
run_job(smk.log[0], smk.threads, lambda: make_image_store(smk.input.manifest, smk.input.root, smk.output.store,
                                                          int(smk.wildcards.res)), where=smk.output[0])
