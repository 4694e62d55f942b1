# Human-facing targets: small files copied out of an experiment's evaluation artifact.


localrules:
    results,


rule results:
    input:
        evaluation_of,
    output:
        ndcg="results/{experiment}/ndcg.tsv",
        metrics="results/{experiment}/metrics.tsv",
    log:
        "logs/results/{experiment}.log",
    params:
        src=evaluation_dir,
    conda:
        "../envs/irflow.yaml"
    shell:
        "(cp {params.src}/ndcg.tsv {output.ndcg} && cp {params.src}/metrics.tsv {output.metrics}"
        " && cat {output.ndcg}) > {log} 2>&1"
