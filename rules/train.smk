# Training and evaluating a victim. One rule, `train_clean`, declares how: what it trains on (the clean train
# split, a published folder, or a defended copy of either, all chosen by `training_data` from the wildcards),
# its settings, resources and script; the other three training rules are it with their own output folder.
# Every job ends by evaluating its model on the clean test split (metrics.json, metrics.parquet).


rule train_clean:
    input:
        unpack(clean_test),  # every victim is tested on the clean test split at its resolution
        data=training_inputs,
        tracking=TRACKING,
        pretrained=lambda w: workflow_checkpoint(w.victim) or [],
    output:
        **run_files(CLEAN_RUN),
    params:
        data=training_data,
        model=lambda w: model_spec(w.victim),
        train=training_settings,
        device=config["device"],
        precision=config["precision"],
        eval=EVAL,
        cell=lambda w: training_cell(config, dict(w.items())),
    log:
        log_path(RESULTS, CLEAN_RUN),
    threads: train_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=cpus(train_threads()),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/train.py"
