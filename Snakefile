# irflow workflow: wiring only. Every path comes from irflow.plan, which computes the same
# content-addressed keys that the `irflow` commands compute; every rule runs one command.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/steps.smk"
include: "rules/report.smk"
include: "rules/results.smk"


rule all:
    input:
        all_targets(),
