# Raw dataset -> validated manifest -> image store at model resolution (rows read and written with pread/pwrite).

# Downloads need the internet: on a cluster they run where Snakemake runs, not on a compute node.
# The MLflow store, the summary and the report are small and also run there.
localrules:
    download,
    tracking_store,
    summary,
    report,


rule generate:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    wildcard_constraints:
        dataset=_alternatives(PLAN.source_copies(GENERATED)),
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
    log:
        log_path(RESULTS, f"{RESOURCES}/{{dataset}}", RESOURCES),
    threads: 2
    resources:
        cpus_per_task=cpus(2),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/generate.py"


rule download:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    wildcard_constraints:
        dataset=_alternatives(PLAN.source_copies(DOWNLOADED)),
    params:
        source=lambda w: {k: v for k, v in config["datasets"][w.dataset]["source"].items() if k != "kind"},
        name=lambda w: w.dataset,
    log:
        log_path(RESULTS, f"{RESOURCES}/{{dataset}}", RESOURCES),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/download.py"


rule manifest:
    input:
        root=dataset_root,
        split_lists=split_lists,
    output:
        manifest=MANIFEST,
        quality=report(quality_path(RESULTS, "{dataset}"), category="Data", labels={"dataset": "{dataset}"}),
    params:
        dataset=lambda w: config["datasets"][w.dataset],
        layout=layout_params,
        split=split_params,
    log:
        log_path(RESULTS, MANIFEST),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/manifest.py"


rule image_store:
    input:
        manifest=rules.manifest.output.manifest,
        root=dataset_root,
    output:
        store=STORE,
        meta=STORE.removesuffix(".npy") + ".json",
    log:
        log_path(RESULTS, STORE),
    threads: 2
    resources:
        cpus_per_task=cpus(2),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/image_store.py"
