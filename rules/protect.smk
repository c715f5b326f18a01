# Protection (GPU-tagged) -> the folder a data owner would publish -> a fresh CLIP trained on it.


rule protect:
    input:
        manifest=MANIFEST,
        store=lambda w: model_store(w.dataset, w.surrogate),
        tracking=TRACKING,
        pretrained=lambda w: workflow_checkpoint(w.surrogate) or [],  # the owner's surrogate may start from it
    output:
        directory(PROTECTION),
    params:
        method=lambda w: config["methods"][w.method],
        model=lambda w: model_spec(w.surrogate),
        device=config["device"],
        precision=config["precision"],
        cell=lambda w: protection_cell(config, dict(w.items())),
    log:
        log_path(RESULTS, PROTECTION),
    threads: torch_threads()
    resources:
        gpu=gpu_count,
        cpus_per_task=cpus(torch_threads()),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/protect.py"


rule publish:
    input:
        manifest=MANIFEST,
        store=lambda w: model_store(w.dataset, w.surrogate),
        protection=PROTECTION,
        tracking=TRACKING,
    output:
        directory(PUBLISHED),
    params:
        model=lambda w: model_spec(w.surrogate),
        cell=lambda w: protection_cell(config, dict(w.items())),
    log:
        log_path(RESULTS, PUBLISHED),
    threads: torch_threads()  # PNG encoding threads; the files do not depend on it
    resources:
        cpus_per_task=cpus(torch_threads()),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/publish.py"


use rule train_clean as retrain with:
    output:
        **run_files(RETRAIN_RUN),
    log:
        log_path(RESULTS, RETRAIN_RUN),
