# Clean-test retrieval for any trained model folder of a dataset.


rule evaluate:
    input:
        model=f"{RESULTS}/{{dataset}}/{{run}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/{{run}}/train.json",
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=lambda w: store_path(w.dataset, w.run.split("/")[-2]),
        tracking=f"{RESULTS}/tracking.json",
    output:
        json=f"{RESULTS}/{{dataset}}/{{run}}/metrics.json",
        parquet=f"{RESULTS}/{{dataset}}/{{run}}/metrics.parquet",
    params:
        device=config["device"],
        batch_size=config["eval"]["batch_size"],
        workers=config["eval"]["workers"],
    log:
        f"{RESULTS}/logs/{{dataset}}/{{run}}/evaluate.log",
    threads: torch_threads()
    resources:
        gpu=gpu_count,  # it builds a model: it runs where the configured device is, like training
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/evaluate.py"
