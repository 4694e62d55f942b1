# One rule per pipeline step. Outputs are store directories, declared through their manifest
# (written last, so a present manifest means a complete artifact); the key wildcard selects the
# plan node, which supplies the inputs and the full command line (already shell-quoted) through
# params. A step's format version is part of its key (irflow.store.STEP_VERSIONS), so no
# version parameter is needed to trigger re-runs.


rule prepare:
    input:
        unpack(inputs_of("prepare")),
    output:
        "results/store/prepare/{key}/manifest.json",
    log:
        "logs/prepare/{key}.log",
    benchmark:
        "benchmarks/prepare/{key}.tsv"
    params:
        args=command_of("prepare"),
    threads: threads_of("prepare")
    resources:
        mem_mb=resource_of("prepare", "mem_mb"),
        runtime=resource_of("prepare", "runtime"),
        gpu=resource_of("prepare", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow prepare {params.args} > {log:q} 2>&1"


rule encode:
    input:
        unpack(inputs_of("encode")),
    output:
        "results/store/encode/{key}/manifest.json",
    log:
        "logs/encode/{key}.log",
    benchmark:
        "benchmarks/encode/{key}.tsv"
    params:
        args=command_of("encode"),
    threads: threads_of("encode")
    resources:
        mem_mb=resource_of("encode", "mem_mb"),
        runtime=resource_of("encode", "runtime"),
        gpu=resource_of("encode", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow encode {params.args} --threads {threads} > {log:q} 2>&1"


rule index:
    input:
        unpack(inputs_of("index")),
    output:
        "results/store/index/{key}/manifest.json",
    log:
        "logs/index/{key}.log",
    benchmark:
        "benchmarks/index/{key}.tsv"
    params:
        args=command_of("index"),
    threads: threads_of("index")
    resources:
        mem_mb=resource_of("index", "mem_mb"),
        runtime=resource_of("index", "runtime"),
        gpu=resource_of("index", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow index {params.args} --threads {threads} > {log:q} 2>&1"


rule search:
    input:
        unpack(inputs_of("search")),
    output:
        "results/store/search/{key}/manifest.json",
    log:
        "logs/search/{key}.log",
    benchmark:
        "benchmarks/search/{key}.tsv"
    params:
        args=command_of("search"),
    threads: threads_of("search")
    resources:
        mem_mb=resource_of("search", "mem_mb"),
        runtime=resource_of("search", "runtime"),
        gpu=resource_of("search", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow search {params.args} --threads {threads} > {log:q} 2>&1"


rule fuse:
    input:
        unpack(inputs_of("fuse")),
    output:
        "results/store/fuse/{key}/manifest.json",
    log:
        "logs/fuse/{key}.log",
    benchmark:
        "benchmarks/fuse/{key}.tsv"
    params:
        args=command_of("fuse"),
    threads: threads_of("fuse")
    resources:
        mem_mb=resource_of("fuse", "mem_mb"),
        runtime=resource_of("fuse", "runtime"),
        gpu=resource_of("fuse", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow fuse {params.args} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(inputs_of("evaluate")),
    output:
        "results/store/evaluate/{key}/manifest.json",
    log:
        "logs/evaluate/{key}.log",
    benchmark:
        "benchmarks/evaluate/{key}.tsv"
    params:
        args=command_of("evaluate"),
    threads: threads_of("evaluate")
    resources:
        mem_mb=resource_of("evaluate", "mem_mb"),
        runtime=resource_of("evaluate", "runtime"),
        gpu=resource_of("evaluate", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow evaluate {params.args} > {log:q} 2>&1"


rule preprocess:
    input:
        unpack(inputs_of("preprocess")),
    output:
        "results/store/preprocess/{key}/manifest.json",
    log:
        "logs/preprocess/{key}.log",
    benchmark:
        "benchmarks/preprocess/{key}.tsv"
    params:
        args=command_of("preprocess"),
    threads: threads_of("preprocess")
    resources:
        mem_mb=resource_of("preprocess", "mem_mb"),
        runtime=resource_of("preprocess", "runtime"),
        gpu=resource_of("preprocess", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow preprocess {params.args} > {log:q} 2>&1"


rule score:
    input:
        unpack(inputs_of("score")),
    output:
        "results/store/score/{key}/manifest.json",
    log:
        "logs/score/{key}.log",
    benchmark:
        "benchmarks/score/{key}.tsv"
    params:
        args=command_of("score"),
    threads: threads_of("score")
    resources:
        mem_mb=resource_of("score", "mem_mb"),
        runtime=resource_of("score", "runtime"),
        gpu=resource_of("score", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow score {params.args} --threads {threads} > {log:q} 2>&1"


rule train:
    input:
        unpack(inputs_of("train")),
    output:
        "results/store/train/{key}/manifest.json",
    log:
        "logs/train/{key}.log",
    benchmark:
        "benchmarks/train/{key}.tsv"
    params:
        args=command_of("train"),
        launcher=launcher_of("train"),
    threads: threads_of("train")
    resources:
        mem_mb=resource_of("train", "mem_mb"),
        runtime=resource_of("train", "runtime"),
        gpu=resource_of("train", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "{params.launcher} train {params.args} --threads {threads} > {log:q} 2>&1"


rule rerank:
    input:
        unpack(inputs_of("rerank")),
    output:
        "results/store/rerank/{key}/manifest.json",
    log:
        "logs/rerank/{key}.log",
    benchmark:
        "benchmarks/rerank/{key}.tsv"
    params:
        args=command_of("rerank"),
    threads: threads_of("rerank")
    resources:
        mem_mb=resource_of("rerank", "mem_mb"),
        runtime=resource_of("rerank", "runtime"),
        gpu=resource_of("rerank", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow rerank {params.args} --threads {threads} > {log:q} 2>&1"


rule cluster:
    input:
        unpack(inputs_of("cluster")),
    output:
        "results/store/cluster/{key}/manifest.json",
    log:
        "logs/cluster/{key}.log",
    benchmark:
        "benchmarks/cluster/{key}.tsv"
    params:
        args=command_of("cluster"),
    threads: threads_of("cluster")
    resources:
        mem_mb=resource_of("cluster", "mem_mb"),
        runtime=resource_of("cluster", "runtime"),
        gpu=resource_of("cluster", "gpu"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow cluster {params.args} --threads {threads} > {log:q} 2>&1"
