"""The plan and the commands agree: every node's command line recomputes the node's key, and every
config default is the command's default — checked for every node of every shipped experiment
without running anything."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from irflow.cli import cli
from irflow.config import validate
from irflow.params import key_from_values
from irflow.plan import build
from irflow.store import compute_key

ROOT = Path(__file__).resolve().parents[1]


def _command(argv: list[str], step: str) -> tuple[click.Command, list[str]]:
    cmd = cli.commands[step]
    if isinstance(cmd, click.Group):
        cmd, argv = cmd.commands[argv[0]], argv[1:]
    return cmd, argv


def command_key(plan, node) -> str:
    """The key ``irflow <step> <the plan's command line>`` computes, parsed by click as a shell would."""
    cmd, argv = _command(plan.argv(node), node.step)
    values = dict(cmd.make_context(node.step, list(argv)).params)
    for k in ("store", "out", "device", "threads"):
        values.pop(k, None)
    cls = type(node.params)
    _, key_params, _, input_keys = key_from_values(cls, values, plan.describe)
    return compute_key(cls.step, key_params, input_keys)


@pytest.fixture(scope="module")
def shipped_plan():
    return build(validate(yaml.safe_load((ROOT / "config/config.yaml").read_text())))


def test_every_node_of_every_shipped_experiment_recomputes_its_key(shipped_plan):
    plan = shipped_plan
    assert {"demo", "dl19", "dl20", "vaswani-ft", "cranfield-ablation"} <= set(plan.experiments)
    steps = {n.step for n in plan.nodes.values()}
    assert steps == {"prepare", "encode", "index", "search", "fuse", "evaluate", "preprocess", "cluster", "score",
                     "train", "rerank"}
    bad = [(n.step, n.key, command_key(plan, n)) for n in plan.nodes.values() if command_key(plan, n) != n.key]
    assert not bad, bad


def test_a_changed_option_changes_the_recomputed_key(shipped_plan):
    """The check above can fail: a command line edited by one option gives another key."""
    plan = shipped_plan
    node = next(n for n in plan.nodes.values() if n.step == "index" and n.params.step == "index"
                and "k1" in type(n.params).model_fields)
    cmd, argv = _command(plan.argv(node), node.step)
    argv = [("1.2" if a == repr(node.params.k1) and argv[i - 1] == "--k1" else a) for i, a in enumerate(argv)]
    values = {k: v for k, v in cmd.make_context("index", argv).params.items() if k not in ("store", "out")}
    _, key_params, _, input_keys = key_from_values(type(node.params), values, plan.describe)
    assert compute_key("index", key_params, input_keys) != node.key


def _commands():
    for name, cmd in cli.commands.items():
        for sub in (cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]):
            cls = getattr(sub, "irflow_params", None)
            if cls is not None:
                yield sub, cls


def test_every_option_default_is_the_parameter_class_default():
    seen = 0
    for cmd, cls in _commands():
        options = {p.name: p for p in cmd.params}
        for name, f in cls.model_fields.items():
            opt = options[name]
            default = f.get_default(call_default_factory=True)
            got = list(opt.default) if opt.multiple and opt.default is not None else opt.default
            if f.is_required():
                continue
            assert got == (list(default) if isinstance(default, (list, tuple)) else default), (cmd.name, name)
            seen += 1
    assert seen > 80


#: config fields that are a command's option under another name
RENAMED = {("DenseSystem", "doc_max_length"): ("PrepareParams", "max_length"),
           ("DenseSystem", "shards"): ("EncodeParams", "num_shards"),
           ("DenseSystem", "index"): ("FaissParams", "factory"),
           ("DenseTraining", "teacher_max_length"): ("ScoreParams", "max_length"),
           ("DenseTraining", "valid"): ("PreprocessParams", "valid_size"),
           ("Split", "seed"): ("PrepareParams", "split_seed"),
           ("Split", "test"): ("PrepareParams", "test_size"),
           ("Split", "valid"): ("PrepareParams", "valid_size"),
           ("Experiment", "measures"): ("EvaluateParams", "measure")}


def test_every_config_default_is_the_commands_default():
    """Each config field that a command also takes has the command's default (one definition)."""
    import irflow.config as C

    steps = {cls.__name__: cls for _, cls in _commands()}
    steps["EncodeParams"] = next(cls for _, cls in _commands() if cls.__name__ == "EncodeParams")
    takes = {"BM25System": ["BM25Params", "SearchParams"],
             "DenseSystem": ["EncodeParams", "FaissParams", "SearchParams", "PrepareParams"],
             "FusionSystem": ["FuseParams"], "RerankSystem": ["RerankParams", "CrossEncoderTrainParams"],
             "DenseTraining": ["PreprocessParams", "BiEncoderTrainParams", "ScoreParams"],
             "Training": ["PreprocessParams"], "Clustering": ["ClusterParams"], "Split": ["PrepareParams"],
             "Experiment": ["EvaluateParams"], "Stage": ["CrossEncoderTrainParams"],
             "DenseStage": ["BiEncoderTrainParams"], "Config": ["EncodeParams"]}
    #: a system picks its model and may leave precision to the config's top level (resolved by the plan)
    chosen_per_system = {"model", "precision"}
    compared = 0
    for cname, targets in takes.items():
        ccls = getattr(C, cname)
        for fname, f in ccls.model_fields.items():
            if f.is_required() or fname in chosen_per_system and cname != "Config":
                continue
            for tname in targets:
                scls = steps[tname]
                rename = RENAMED.get((cname, fname))
                if rename and rename[0] != tname:
                    continue
                sname = rename[1] if rename else fname
                if sname not in scls.model_fields or scls.model_fields[sname].is_required():
                    continue
                assert f.get_default(call_default_factory=True) == \
                    scls.model_fields[sname].get_default(call_default_factory=True), (cname, fname, tname)
                compared += 1
    assert compared > 60, compared


def test_the_dl19_dry_run_lists_resources_of_every_job_and_training_memory_follows_the_model(tmp_path, tiny_bert):
    """`snakemake -n -p results/dl19/ndcg.tsv` shows mem_mb, runtime and gpu for every job;
    a stage on two devices asks for two GPUs; training memory follows the model's size."""
    import copy
    import os
    import re
    import subprocess
    import sys

    from irflow.resources import estimate

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/dl19/ndcg.tsv", "-s", str(ROOT / "Snakefile"),
                        "-d", str(tmp_path), "--configfile", str(ROOT / "config" / "config.yaml"), "-n", "-p",
                        "--cores", "8", "--resources", "gpu=4"], env=env, capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = re.split(r"\n(?=(?:localrule|rule) \w+:)", r.stdout)
    jobs = [j for j in jobs if re.match(r"rule (\w+):", j)]
    assert len(jobs) > 20
    for job in jobs:
        rule = re.match(r"rule (\w+):", job).group(1)
        res = re.search(r"resources: (.*)", job)
        assert res, job  # (Snakemake prints `threads:` only above 1)
        for what in ("mem_mb=", "runtime=", "gpu="):
            assert what in res.group(1), (rule, res.group(1))
    assert any(re.match(r"rule train:", j) and "gpu=1" in j for j in jobs)

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    tasb = cfg["experiments"]["dl19"]["systems"]["tas-balanced"]
    small = copy.deepcopy(cfg)
    t = small["experiments"]["dl19"]["systems"]["tas-balanced"]
    t["model"] = str(tiny_bert)
    t["training"]["stages"][0]["devices"] = 2
    plans = {name: build(validate(c, source=name)) for name, c in (("shipped", cfg), ("tiny", small))}

    def first_stage(plan, model):
        return next(n for n in plan.nodes.values() if n.step == "train" and n.params.family == "bi-encoder"
                    and n.params.model == model)

    big, tiny = estimate(plans["shipped"], first_stage(plans["shipped"], tasb["model"])), \
        estimate(plans["tiny"], first_stage(plans["tiny"], str(tiny_bert)))
    assert tasb["model"].startswith("distilbert")
    assert big.mem_mb > 8 * 1024 > tiny.mem_mb and big.gpu == 1 and tiny.gpu == 2  # tiny: two processes
