# Helpers shared by the rules: the validated config, the plan of store artifacts, and the
# functions that rules call to look up their inputs, command lines and resources by key.
import re

from irflow.config import validate
from irflow.plan import build

STORE = "results/store"
CONFIG_SOURCES = [str(f) for f in workflow.configfiles] or ["config/config.yaml"]
PLAN = build(validate(config, source=", ".join(CONFIG_SOURCES)), store=STORE)


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


_ESTIMATES = {}


def _estimate(step, key):
    from irflow.resources import estimate

    if (step, key) not in _ESTIMATES:
        _ESTIMATES[step, key] = estimate(PLAN, PLAN.node(step, key))
    return _ESTIMATES[step, key]


def launcher_of(step):
    def launcher(wildcards):
        from irflow.resources import launcher

        return launcher(PLAN.node(step, wildcards.key))

    return launcher


def threads_of(step):
    def threads(wildcards):
        return _estimate(step, wildcards.key).threads

    return threads


def resource_of(step, what):
    """mem_mb, runtime (minutes) or gpu of a job, estimated by the plan from the data sizes."""

    def value(wildcards, attempt):
        v = getattr(_estimate(step, wildcards.key), what)
        return v * attempt if what in ("mem_mb", "runtime") else v  # a retry asks for more

    return value


def evaluation_of(wildcards):
    return PLAN.manifest(PLAN.experiments[wildcards.experiment])


def evaluation_file(name):
    def path(wildcards):
        return f"{PLAN.path(PLAN.experiments[wildcards.experiment])}/{name}"

    return path
