# Helpers shared by the rules: the validated config, the plan of store artifacts, and the
# functions that rules call to look up their inputs, command lines and resources by key.
import re

from irflow.config import validate
from irflow.plan import build

STORE = "results/store"
CONFIG_SOURCES = [str(f) for f in workflow.configfiles] or ["config/config.yaml"]
PLAN = build(validate(config, source=" + ".join(CONFIG_SOURCES)), store=STORE)


wildcard_constraints:
    key="[0-9a-f]{16}",
    experiment="|".join(re.escape(e) for e in PLAN.experiments) or "none",


def all_targets():
    return expand("results/{experiment}/ndcg.tsv", experiment=sorted(PLAN.experiments))


def inputs_of(step):
    def inputs(wildcards):
        return PLAN.input_manifests(step, wildcards.key)

    return inputs


def command_of(step):
    def command(wildcards):
        return PLAN.command(step, wildcards.key)

    return command


def gpus_of(step):
    def gpus(wildcards):
        return int(PLAN.node(step, wildcards.key).gpu)

    return gpus


def evaluation_of(wildcards):
    return PLAN.manifest(PLAN.experiments[wildcards.experiment])


def evaluation_file(name):
    def path(wildcards):
        return PLAN.path(PLAN.experiments[wildcards.experiment]) + "/" + name

    return path
