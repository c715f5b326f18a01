# Raw dataset -> validated manifest -> memory-mapped image store at model resolution.


rule generate_shapes:
    output:
        directory(f"{RESOURCES}/{{dataset}}"),
    wildcard_constraints:
        dataset=_alternatives(SHAPES_DATASETS),
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
    log:
        f"{RESULTS}/logs/{{dataset}}/generate.log",
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/generate_shapes.py"


rule manifest:
    input:
        dataset_root,
    output:
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        quality=report(f"{RESULTS}/{{dataset}}/data/quality.json", category="Data", labels={"dataset": "{dataset}"}),
    params:
        dataset=lambda w: config["datasets"][w.dataset],
    log:
        f"{RESULTS}/logs/{{dataset}}/manifest.log",
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/manifest.py"


rule image_store:
    input:
        manifest=rules.manifest.output.manifest,
        root=dataset_root,
    output:
        store=f"{RESULTS}/{{dataset}}/data/images_{{res}}px.npy",
        meta=f"{RESULTS}/{{dataset}}/data/images_{{res}}px.json",
    log:
        f"{RESULTS}/logs/{{dataset}}/image_store_{{res}}px.log",
    threads: 2
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/image_store.py"
