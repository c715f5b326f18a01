# The clean baseline: a CLIP trained from scratch on the dataset's train split. The retrain on a published
# folder is in protect.smk; both run scripts/train.py, told by params what to train on, and end by evaluating
# the model on the clean test split (metrics.json, metrics.parquet).


rule train_clean:
    input:
        unpack(clean_test),  # the clean victim trains on the same manifest and store it is tested on
        tracking=f"{RESULTS}/tracking.json",
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        model=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/model.safetensors",
        record=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/train.json",
        metrics=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/metrics.json",
        metrics_row=f"{RESULTS}/{{dataset}}/clean/{{victim}}/seed{{seed}}/metrics.parquet",
    params:
        data=lambda w, input: {"manifest": input.test_manifest, "store": input.test_store},
        model=lambda w: model_spec(w.victim),
        train=lambda w: victim_train(w.victim),
        device=config["device"],
        eval=EVAL,
        cell=lambda w: {"dataset": w.dataset, "method": "clean", "apply": "none", "surrogate": "none",
                        "victim": w.victim, "seed": int(w.seed)},
    log:
        f"{RESULTS}/logs/{{dataset}}/clean/{{victim}}/seed{{seed}}/train.log",
    threads: train_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=lambda w, threads: threads,
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"
