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
    params:
        args=command_of("prepare"),
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
    threads: 2
    resources:
        gpu=1,
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
    params:
        args=command_of("index"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow index {params.args} > {log:q} 2>&1"


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
    threads: 2
    resources:
        gpu=gpus_of("search"),
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
    params:
        args=command_of("fuse"),
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
    params:
        args=command_of("evaluate"),
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
    params:
        args=command_of("preprocess"),
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
    threads: 2
    resources:
        gpu=1,
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
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow train {params.args} --threads {threads} > {log:q} 2>&1"


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
    threads: 2
    resources:
        gpu=1,
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
    params:
        args=command_of("cluster"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow cluster {params.args} --threads {threads} > {log:q} 2>&1"
