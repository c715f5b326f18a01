# The clean baseline: a CLIP trained from scratch on the dataset's train split. The retrain on a published
# folder is in protect.smk; both run scripts/train.py, told by params what to train on.


rule train_clean:
    input:
        manifest=f"{RESULTS}/{{dataset}}/data/manifest.parquet",
        store=lambda w: store_path(w.dataset, w.victim),
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        model=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/train.json",
    params:
        data=lambda w, input: {"manifest": input.manifest, "store": input.store},
        model=lambda w: model_spec(w.victim),
        train=lambda w: victim_train(w.victim),
        device=config["device"],
        cell=lambda w: {"dataset": w.dataset, "method": "clean", "apply": "none", "surrogate": "none",
                        "victim": w.victim, "seed": int(w.seed)},
    log:
        f"{RESULTS}/logs/{{dataset}}/clean/{{victim}}/seed{{seed}}/train.log",
    threads: torch_threads()
    resources:
        gpu=gpu_count,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"
