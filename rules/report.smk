# Figures for Snakemake's report (`snakemake --report report.html results/<experiment>/ndcg.tsv`):
# human-facing files under results/<experiment>/report/, never in the store and never in a key.
# Each experiment's result copy depends on them, so the report of its ndcg.tsv has them all.


localrules:
    report_evaluation,
    report_training,


from irflow.report import report_files

# the report files of an experiment (its evaluation's, and its training's where it trains)
report_of = lambda wildcards: report_files(PLAN, wildcards.experiment)
evaluation_dir = lambda wildcards: PLAN.path(PLAN.experiments[wildcards.experiment])


rule report_evaluation:
    input:
        evaluation_of,
    output:
        table=report("results/{experiment}/report/results.html", caption="../workflow/report/results.rst",
                     category="{experiment}", subcategory="results", labels={"figure": "results table"}),
        perquery=report("results/{experiment}/report/perquery.png", caption="../workflow/report/perquery.rst",
                        category="{experiment}", subcategory="results", labels={"figure": "per-query nDCG@10"}),
        recall=report("results/{experiment}/report/recall.png", caption="../workflow/report/recall.rst",
                      category="{experiment}", subcategory="results", labels={"figure": "recall@k"}),
        resources=report("results/{experiment}/report/resources.png", caption="../workflow/report/resources.rst",
                         category="{experiment}", subcategory="resources", labels={"figure": "time and memory"}),
    log:
        "logs/report/{experiment}.evaluation.log",
    resources:  # local rules, but declared like every other job's (matplotlib over small tables)
        mem_mb=2048,
        runtime=10,
        gpu=0,
    params:
        evaluation=evaluation_dir,
        benchmarks="benchmarks",
    conda:
        "../envs/irflow.yaml"
    script:
        "../workflow/scripts/report_evaluation.py"


rule report_training:
    input:
        evaluation_of,
    output:
        training=report("results/{experiment}/report/training.png", caption="../workflow/report/training.rst",
                        category="{experiment}", subcategory="training", labels={"figure": "loss and validation"}),
        margins=report("results/{experiment}/report/margins.png", caption="../workflow/report/margins.rst",
                       category="{experiment}", subcategory="training", labels={"figure": "teacher margins"}),
        clusters=report("results/{experiment}/report/clusters.png", caption="../workflow/report/clusters.rst",
                        category="{experiment}", subcategory="training", labels={"figure": "cluster sizes and sampled bins"}),
    log:
        "logs/report/{experiment}.training.log",
    resources:
        mem_mb=2048,
        runtime=10,
        gpu=0,
    params:
        evaluation=evaluation_dir,
        benchmarks="benchmarks",
    conda:
        "../envs/irflow.yaml"
    script:
        "../workflow/scripts/report_training.py"
