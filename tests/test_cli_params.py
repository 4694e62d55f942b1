"""Parameters declared once: the CLI validates them with the config's constraints, inputs are checked
for the step (and kind) they must come from, and hostile names never reach a path or a shell."""

from __future__ import annotations

import pytest

from conftest import irflow


@pytest.fixture(scope="module")
def small_store(tiny_store):
    """Prepared tiny docs and queries, a BM25 index and a run: what the checks below feed back in."""
    return {"root": tiny_store.root, "env": tiny_store.env, "store": tiny_store.path,
            **tiny_store.tiny_first_stage(k=20)}


def _refused(s, args, *words):
    listing = sorted(p.relative_to(s["store"]) for p in s["store"].rglob("*"))
    r = irflow([*args, "--store", s["store"]], s["env"], s["root"], check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(p.relative_to(s["store"]) for p in s["store"].rglob("*")) == listing, "something was written"
    return lines[0]


def test_out_of_range_bm25_parameters_are_refused_per_option(small_store):
    s = small_store
    line = _refused(s, ["index", "bm25", "--texts", s["docs"], "--k1", "-1", "--b", "7"], "--k1", "--b")
    assert "greater than or equal to 0" in line and "less than or equal to 1" in line


def test_a_docs_artifact_given_as_queries_is_refused(small_store):
    s = small_store
    _refused(s, ["search", "--index", s["index"], "--queries", s["docs"]], "--queries", "docs", "expected queries")


def test_an_artifact_of_another_step_is_refused(small_store):
    s = small_store
    _refused(s, ["search", "--index", s["bm25"], "--queries", s["queries"]], "--index", "a search artifact",
             "expected index")


def test_fusing_a_single_run_is_refused(small_store):
    s = small_store
    _refused(s, ["fuse", "--run", s["bm25"]], "--run", "at least 2")


def test_a_plain_directory_is_not_an_artifact(small_store, tmp_path):
    s = small_store
    _refused(s, ["fuse", "--run", s["bm25"], "--run", tmp_path], "--run", "not a complete irflow artifact")


def test_an_unknown_choice_and_a_bad_number_are_refused(small_store):
    s = small_store
    r = irflow(["fuse", "--run", s["bm25"], "--run", s["bm25"], "--method", "sum", "--store", s["store"]],
               s["env"], s["root"], check=False)
    assert r.returncode == 2 and "'sum' is not one of 'rrf', 'combsum'" in r.stderr, r.stderr
    _refused(s, ["fuse", "--run", s["bm25"], "--run", s["bm25"], "--rrf-k", "0"], "--rrf-k", "greater than or equal")


def test_train_takes_model_or_init_not_both(small_store):
    s = small_store
    examples = irflow(["preprocess", "--qrels", "synthetic:tiny", "--queries", s["queries"], "--run", s["bm25"],
                       "--store", s["store"]], s["env"], s["root"]).stdout.strip()
    _refused(s, ["train", "cross-encoder", "--examples", s["root"] / examples, "--queries", s["queries"],
                 "--docs", s["docs"]], "exactly one of --model or --init")


def test_evaluate_baseline_must_be_a_run(small_store):
    s = small_store
    _refused(s, ["evaluate", "--qrels", "synthetic:tiny", "--queries", s["queries"], "--run", f"a={s['bm25']}",
                 "--baseline", "b"], "--baseline 'b'", "one of the runs (a)")


# ----------------------------------------------------------------------------- hostile names


HOSTILE = ["a;touch pwned", "a(b)", "x=y", "tab\there", "../escape", ".hidden", "-dash", "sp ace"]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("where", ["experiment", "system"])
def test_hostile_names_are_refused_before_any_job(name, where, workflow):
    systems = {"bm25": {"type": "bm25"}}
    if where == "system":
        systems = {name: {"type": "bm25"}}
    workflow.write_config({"experiments": {(name if where == "experiment" else "x"): {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "systems": systems}}})
    r = workflow.snakemake("-n", "-p", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-2000:]
    assert "should match pattern" in out and "Traceback" not in out, out[-2000:]
    assert not (workflow.path / "results").exists() and not (workflow.path.parent / "pwned").exists()
    assert not (workflow.path / "pwned").exists()


def test_a_config_error_names_the_file_it_is_in(workflow):
    workflow.write_config({"experiments": {"x": {"corpus": "synthetic:tiny", "queries": "synthetic:tiny",
                                                 "systems": {"bm25": {"type": "bm25"}}}}})
    extra = workflow.path / "override.yaml"
    extra.write_text("experiments:\n  x:\n    systems:\n      bm25: {type: bm25, k1: -3}\n")
    r = workflow.snakemake("-n", "--configfile", extra, check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    line = next(line for line in out.splitlines() if "k1" in line)
    assert "override.yaml" in line and "experiments.x.systems.bm25.k1" in line, line


def test_the_dry_run_of_a_valid_config_quotes_every_path(workflow):
    workflow.write_config({"experiments": {"a.b-c_1": {"corpus": "synthetic:tiny", "queries": "synthetic:tiny",
                                                       "systems": {"bm25": {"type": "bm25"}}}}})
    r = workflow.snakemake("-n", "-p", "results/a.b-c_1/ndcg.tsv")
    assert "results/a.b-c_1/ndcg.tsv" in r.stdout
    # the regex of the experiment wildcard is escaped: a.b-c_1 does not match aXb-c_1
    r = workflow.snakemake("-n", "results/aXb-c_1/ndcg.tsv", check=False)
    assert r.returncode != 0


def test_a_stage_on_two_devices_is_one_torchrun_job_with_two_gpus(workflow):
    stage = {"objective": "lce", "batch_queries": 2, "group_size": 4, "max_steps": 2, "devices": 2}
    workflow.write_config({"experiments": {"x": {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "split": {"seed": 1, "test": 10, "valid": 4},
        "systems": {"bm25": {"type": "bm25"},
                    "rerank": {"type": "rerank", "first_stage": "bm25", "training": {"first_stage": "bm25"},
                               "stages": [stage]}}}}})
    import re

    out = workflow.snakemake("-n", "-p", "results/x/ndcg.tsv", "--resources", "gpu=4").stdout
    job = re.search(r"rule train:\n(.*?)Shell command", out, re.S)
    assert job and re.search(r"resources: [^\n]*gpu=2", job.group(1)), out[-3000:]
    assert "torchrun --standalone --nproc-per-node 2 -m irflow.cli train cross-encoder" in out, out[-3000:]
    assert "--devices 2" in out
