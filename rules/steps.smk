# One rule per pipeline step. Outputs are store directories, declared through their manifest
# (written last, so a present manifest means a complete artifact); the key wildcard selects the
# plan node, which supplies the inputs and the full command line through params.


rule prepare:
    input:
        unpack(inputs_of("prepare")),
    output:
        "results/store/prepare/{key}/manifest.json",
    log:
        "logs/prepare/{key}.log",
    params:
        args=command_of("prepare"),
        version=IRFLOW_VERSION,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow prepare {params.args} > {log} 2>&1"


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
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow encode {params.args} --threads {threads} > {log} 2>&1"


rule index:
    input:
        unpack(inputs_of("index")),
    output:
        "results/store/index/{key}/manifest.json",
    log:
        "logs/index/{key}.log",
    params:
        args=command_of("index"),
        version=IRFLOW_VERSION,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow index {params.args} > {log} 2>&1"


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
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=gpus_of("search"),
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow search {params.args} --threads {threads} > {log} 2>&1"


rule fuse:
    input:
        unpack(inputs_of("fuse")),
    output:
        "results/store/fuse/{key}/manifest.json",
    log:
        "logs/fuse/{key}.log",
    params:
        args=command_of("fuse"),
        version=IRFLOW_VERSION,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow fuse {params.args} > {log} 2>&1"


rule evaluate:
    input:
        unpack(inputs_of("evaluate")),
    output:
        "results/store/evaluate/{key}/manifest.json",
    log:
        "logs/evaluate/{key}.log",
    params:
        args=command_of("evaluate"),
        version=IRFLOW_VERSION,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow evaluate {params.args} > {log} 2>&1"


rule preprocess:
    input:
        unpack(inputs_of("preprocess")),
    output:
        "results/store/preprocess/{key}/manifest.json",
    log:
        "logs/preprocess/{key}.log",
    params:
        args=command_of("preprocess"),
        version=IRFLOW_VERSION,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow preprocess {params.args} > {log} 2>&1"


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
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow score {params.args} --threads {threads} > {log} 2>&1"


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
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow train {params.args} --threads {threads} > {log} 2>&1"


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
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow rerank {params.args} --threads {threads} > {log} 2>&1"


rule cluster:
    input:
        unpack(inputs_of("cluster")),
    output:
        "results/store/cluster/{key}/manifest.json",
    log:
        "logs/cluster/{key}.log",
    params:
        args=command_of("cluster"),
        version=IRFLOW_VERSION,
    threads: 2
    resources:
        gpu=1,
    conda:
        "../envs/irflow.yaml"
    shell:
        "irflow cluster {params.args} --threads {threads} > {log} 2>&1"
