# Human-facing targets: small files copied out of an experiment's evaluation artifact.


localrules:
    results,


rule results:
    input:
        evaluation_of,
        report_of,  # rules/report.smk: so that `snakemake --report` of ndcg.tsv has the figures
    output:
        ndcg="results/{experiment}/ndcg.tsv",
        metrics="results/{experiment}/metrics.tsv",
    log:
        "logs/results/{experiment}.log",
    resources:  # two small copies
        mem_mb=256,
        runtime=1,
        gpu=0,
    params:
        ndcg=evaluation_file("ndcg.tsv"),
        metrics=evaluation_file("metrics.tsv"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "(cp {params.ndcg:q} {output.ndcg:q} && cp {params.metrics:q} {output.metrics:q}"
        " && cat {output.ndcg:q}) > {log:q} 2>&1"
