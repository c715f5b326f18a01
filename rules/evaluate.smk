# Clean-test retrieval for any trained model folder of a dataset.


rule evaluate:
    input:
        model=f"{RESULTS}/{{dataset}}/{{trained}}/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/{{trained}}/{{victim}}/seed{{seed}}/train.json",
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=lambda w: store_path(w.dataset, w.victim),  # the clean test images at the victim's resolution
        tracking=f"{RESULTS}/tracking.json",
    output:
        json=f"{RESULTS}/{{dataset}}/{{trained}}/{{victim}}/seed{{seed}}/metrics.json",
        parquet=f"{RESULTS}/{{dataset}}/{{trained}}/{{victim}}/seed{{seed}}/metrics.parquet",
    wildcard_constraints:
        # clean or retrain/method/apply/surrogate, under defended/<defence>/ when a defence applies
        trained=r"(defended/[^/]+/)?(clean|retrain/[^/]+/[^/]+/[^/]+)",
    params:
        device=config["device"],
        batch_size=config["eval"]["batch_size"],
        workers=config["eval"]["workers"],
    log:
        f"{RESULTS}/logs/{{dataset}}/{{trained}}/{{victim}}/seed{{seed}}/evaluate.log",
    threads: torch_threads()
    resources:
        gpu=gpu_count,  # it builds a model: it runs where the configured device is, like training
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/evaluate.py"
