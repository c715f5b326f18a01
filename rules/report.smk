# Every evaluated model -> one summary table -> the human-facing report.


rule summary:
    input:
        run_file("metrics_row"),
    output:
        summary_path(RESULTS),
    log:
        log_path(RESULTS, summary_path(RESULTS)),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/summary.py"


rule report:
    input:
        summary=summary_path(RESULTS),
        records=run_file("record"),
        protections=protection_dirs(RESULTS, config),
        published=published_dirs(RESULTS, config),
    output:
        html=report(report_path(RESULTS, "index.html"), category="Results", caption="../report/results.rst"),
        recall=report(report_path(RESULTS, "recall.png"), category="Results", caption="../report/recall.rst"),
        curves=report(report_path(RESULTS, "training_curves.png"), category="Training", caption="../report/curves.rst"),
        transfer=report(report_path(RESULTS, "transfer_matrix.png"), category="Results",
                        caption="../report/transfer.rst"),
        trigger_lengths=report(report_path(RESULTS, "trigger_lengths.png"), category="Results",
                               caption="../report/trigger_lengths.rst"),
        heatmap=report(report_path(RESULTS, "retained_heatmap.png"), category="Defences",
                       caption="../report/retained_heatmap.rst"),
        visibility=report(report_path(RESULTS, "visibility_scraper.png"), category="Defences",
                          caption="../report/visibility.rst"),
        table=report(report_path(RESULTS, "results.csv"), category="Results", caption="../report/results.rst"),
    params:
        config=config,
        gallery=gallery_entries,
        metric=config.get("report", {}).get("metric"),
    log:
        log_path(RESULTS, report_path(RESULTS)),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/report.py"
