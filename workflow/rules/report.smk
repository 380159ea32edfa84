# Stage "report": the self-contained HTML report and its plots (pipeline/study/report/, entry point page.py), also registered
# for `snakemake --report` with captions from workflow/report/.
# Input functions: rules/inputs/study.smk.


rule report:
    input:
        unpack(get_report_inputs),
    output:
        **{
            name: report(
                f"results/report/plots/{name}.png",
                caption=f"../report/{caption}.rst",
                category="Plots",
                labels={"plot": name},
            )
            for name, caption in REPORT_PLOTS.items()
        },
        html=report(
            "results/report/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/pipeline.yaml"
    resources:
        **CPU_RESOURCES,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    params:
        spec=get_report_spec,
    shell:
        "python -m pipeline.cli report --spec {params.spec:q} > {log} 2>&1"
