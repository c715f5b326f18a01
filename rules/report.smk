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
        html=report(report_path(RESULTS, "html"), category="Results", caption="../report/results.rst"),
        recall=report(report_path(RESULTS, "recall"), category="Results", caption="../report/recall.rst"),
        curves=report(report_path(RESULTS, "curves"), category="Training", caption="../report/curves.rst"),
        transfer=report(report_path(RESULTS, "transfer"), category="Results",
                        caption="../report/transfer.rst"),
        trigger_lengths=report(report_path(RESULTS, "trigger_lengths"), category="Results",
                               caption="../report/trigger_lengths.rst"),
        heatmap=report(report_path(RESULTS, "heatmap"), category="Defences",
                       caption="../report/retained_heatmap.rst"),
        visibility=report(report_path(RESULTS, "visibility"), category="Defences",
                          caption="../report/visibility.rst"),
        table=report(report_path(RESULTS, "table"), category="Results", caption="../report/results.rst"),
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
