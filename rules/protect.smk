# Protection (GPU-tagged) -> the folder a data owner would publish -> a fresh CLIP trained on it.


rule protect:
    input:
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=lambda w: store_path(w.dataset, w.surrogate),
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.surrogate) or [],  # the owner's surrogate may start from it
    output:
        directory(f"{RESULTS}/{{dataset}}/protect/{{method}}/{{surrogate}}/seed{{seed}}"),
    params:
        method=lambda w: config["methods"][w.method],
        model=lambda w: model_spec(w.surrogate),
        device=config["device"],
        cell=lambda w: {"dataset": w.dataset, "method": w.method, "surrogate": w.surrogate, "seed": int(w.seed),
                        "method_params": config["methods"][w.method]},
    log:
        f"{RESULTS}/logs/{{dataset}}/protect/{{method}}/{{surrogate}}/seed{{seed}}.log",
    threads: torch_threads()
    resources:
        gpu=gpu_count,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/protect.py"


rule publish:
    input:
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=lambda w: store_path(w.dataset, w.surrogate),
        protection=f"{RESULTS}/{{dataset}}/protect/{{method}}/{{surrogate}}/seed{{seed}}",
        tracking=f"{RESULTS}/tracking.json",
    output:
        directory(f"{RESULTS}/{{dataset}}/published/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}"),
    params:
        model=lambda w: model_spec(w.surrogate),
        cell=lambda w: {"dataset": w.dataset, "method": w.method, "apply": w.apply, "surrogate": w.surrogate,
                        "seed": int(w.seed), "method_params": config["methods"][w.method]},
    log:
        f"{RESULTS}/logs/{{dataset}}/publish/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}.log",
    threads: torch_threads()  # PNG encoding threads; the files do not depend on it
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/publish.py"


rule retrain:
    input:
        unpack(clean_test),
        published=f"{RESULTS}/{{dataset}}/published/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}",
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        model=f"{RESULTS}/{{dataset}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/train.json",
        metrics=f"{RESULTS}/{{dataset}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/metrics.json",
        metrics_row=f"{RESULTS}/{{dataset}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/metrics.parquet",
    params:
        data=lambda w, input: {"manifest": f"{input.published}/manifest.parquet",
                               "store": f"{input.published}/images.npy"},  # what a scraper would train on
        model=lambda w: model_spec(w.victim),
        train=lambda w: victim_train(w.victim),
        device=config["device"],
        eval=EVAL,
        cell=lambda w: {"dataset": w.dataset, "method": w.method, "apply": w.apply, "surrogate": w.surrogate,
                        "victim": w.victim, "seed": int(w.seed), "method_params": config["methods"][w.method]},
    log:
        f"{RESULTS}/logs/{{dataset}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}.log",
    threads: train_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=lambda w, threads: threads,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"
