# A scraper's defence: the folder a victim trains on after it, for the clean baseline and for every
# published folder, so that each drop is measured against clean data under the same defence. A protection
# is made once and defended many times. Augmentation changes no file: it is a setting of training.


rule defend_clean:
    input:
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=f"{RESULTS}/{{dataset}}/data/images_{{res}}px.npy",
    output:
        directory(f"{RESULTS}/{{dataset}}/defended/{{defence}}/data/clean_{{res}}px"),
    params:
        data=lambda w, input: {"manifest": input.manifest, "store": input.store},
        defence=lambda w: config["defences"][w.defence],
    log:
        f"{RESULTS}/logs/{{dataset}}/defended/{{defence}}/clean_{{res}}px.log",
    threads: torch_threads()
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/defend.py"


rule defend_published:
    input:
        published=f"{RESULTS}/{{dataset}}/published/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}",
    output:
        directory(f"{RESULTS}/{{dataset}}/defended/{{defence}}/published/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}"),
    params:
        data=lambda w, input: {"manifest": f"{input.published}/manifest.parquet",
                               "store": f"{input.published}/images.npy"},
        defence=lambda w: config["defences"][w.defence],
    log:
        f"{RESULTS}/logs/{{dataset}}/defended/{{defence}}/publish/{{method}}/{{apply}}/{{surrogate}}/seed{{seed}}.log",
    threads: torch_threads()
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/defend.py"


rule train_clean_defended:
    input:
        unpack(clean_test),
        data=lambda w: data_inputs(defended_clean_data(w)),
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        model=f"{RESULTS}/{{dataset}}/defended/{{defence}}/clean/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/defended/{{defence}}/clean/{{victim}}/seed{{seed}}/train.json",
        metrics=f"{RESULTS}/{{dataset}}/defended/{{defence}}/clean/{{victim}}/seed{{seed}}/metrics.json",
        metrics_row=f"{RESULTS}/{{dataset}}/defended/{{defence}}/clean/{{victim}}/seed{{seed}}/metrics.parquet",
    params:
        data=defended_clean_data,
        model=lambda w: model_spec(w.victim),
        train=lambda w: victim_train(w.victim, augment_scale_min=defence(config, w.defence).augment_scale_min),
        device=config["device"],
        eval=EVAL,
        cell=lambda w: {"dataset": w.dataset, "method": "clean", "apply": "none", "surrogate": "none",
                        "victim": w.victim, "seed": int(w.seed), "defence": w.defence},
    log:
        f"{RESULTS}/logs/{{dataset}}/defended/{{defence}}/clean/{{victim}}/seed{{seed}}/train.log",
    threads: train_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=lambda w, threads: threads,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"


rule retrain_defended:
    input:
        unpack(clean_test),
        data=lambda w: data_inputs(defended_published_data(w)),
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        model=f"{RESULTS}/{{dataset}}/defended/{{defence}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/defended/{{defence}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/train.json",
        metrics=f"{RESULTS}/{{dataset}}/defended/{{defence}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/metrics.json",
        metrics_row=f"{RESULTS}/{{dataset}}/defended/{{defence}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}/metrics.parquet",
    params:
        data=defended_published_data,
        model=lambda w: model_spec(w.victim),
        train=lambda w: victim_train(w.victim, augment_scale_min=defence(config, w.defence).augment_scale_min),
        device=config["device"],
        eval=EVAL,
        cell=lambda w: {"dataset": w.dataset, "method": w.method, "apply": w.apply, "surrogate": w.surrogate,
                        "victim": w.victim, "seed": int(w.seed), "method_params": config["methods"][w.method],
                        "defence": w.defence},
    log:
        f"{RESULTS}/logs/{{dataset}}/defended/{{defence}}/retrain/{{method}}/{{apply}}/{{surrogate}}/{{victim}}/seed{{seed}}.log",
    threads: train_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=lambda w, threads: threads,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"
