"""The dense-retriever training chain in the workflow, and the ablation's sharing of artifacts.

preprocess -> cluster -> score teacher margins -> ColBERT teacher -> stage 1 -> stage 2 -> encode ->
index -> search -> re-rank -> evaluate, on the tiny synthetic collection with a tiny BERT.
"""

from __future__ import annotations

import copy

from test_workflow import read_tsv


def _chain_config(tiny_bert) -> dict:
    small = {"batch_size": 4, "max_steps": 3, "lr": 1e-3}
    return {"experiments": {"tiny-dense": {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "bm25",
        "split": {"seed": 1, "test": 10, "valid": 4},
        "systems": {
            "bm25": {"type": "bm25"},
            "dense-zeroshot": {"type": "dense", "model": str(tiny_bert), "doc_max_length": 64},
            "dense": {"type": "dense", "model": str(tiny_bert), "doc_max_length": 64, "training": {
                "first_stage": "bm25", "depth": 30, "min_grade": 2, "teacher": "rerank",
                "clusters": {"k": 4}, "query_max_length": 16, "passage_max_length": 48,
                "colbert": {"model": str(tiny_bert), "stage": {"objective": "margin-mse", **small}},
                "stages": [{"objective": "infonce", "sampler": "tas", **small},
                           {"objective": "dual", "sampler": "tas-balanced", "validate_every": 3, **small}]}},
            "rerank": {"type": "rerank", "first_stage": "dense", "depth": 20, "model": str(tiny_bert),
                       "max_length": 64, "training": {"first_stage": "bm25", "depth": 30, "min_grade": 2},
                       "stages": [{"objective": "lce", "batch_queries": 2, "group_size": 4, "max_steps": 3}]},
        },
    }}}


def test_dense_training_chain_runs_in_the_workflow(workflow, tiny_bert):
    config = _chain_config(tiny_bert)
    workflow.write_config(config)
    target = "results/tiny-dense/ndcg.tsv"
    planned = workflow.planned_jobs(target)
    # re-ranker 1 stage + ColBERT teacher + 2 bi-encoder stages; one clustering, one teacher scoring
    assert planned["train"] == 4 and planned["cluster"] == 1 and planned["score"] == 1, planned
    assert planned["encode"] == 2 and planned["preprocess"] == 1, planned
    workflow.env["IRFLOW_PROGRESS_EVERY"] = "0"  # every progress update becomes a plain log line
    workflow.snakemake(target)
    rows = read_tsv(workflow.path / target)
    assert [r["system"] for r in rows] == ["bm25", "dense-zeroshot", "dense", "rerank"]
    assert all(int(r["queries"]) == 10 for r in rows)
    assert workflow.planned_jobs(target) == {}
    _assert_progress_in_logs(workflow.path / "logs")

    # alpha only changes the dual stage: it re-trains, re-encodes, re-searches, re-ranks, re-evaluates
    changed = copy.deepcopy(config)
    changed["experiments"]["tiny-dense"]["systems"]["dense"]["training"]["stages"][1]["alpha"] = 0.5
    workflow.write_config(changed)
    planned = workflow.planned_jobs(target)
    assert planned == {"train": 1, "encode": 1, "index": 1, "search": 1, "rerank": 1, "evaluate": 1,
                       "report_evaluation": 1, "report_training": 1, "results": 1}, planned


#: what each long step's log says while it works (irflow.progress: plain lines under Snakemake)
PROGRESS = {"prepare": r"prepare (docs|queries) \(synthetic:tiny\): \d+ row",
            "index": r"(bm25 index: tokenising: \d+/\d+ batch|done in)", "search": r"(bm25 search: \d+/\d+ query|done in)",
            "encode": r"encode shard 0/1: \d+/\d+ psg \(\d+%\), [\d.]+ psg/s, ETA",
            "score": r"score: teacher 1/1: \d+/\d+ pair", "rerank": r"rerank: \d+/\d+ pair",
            "train": r"train: \d+/3 step \(\d+%\)", "cluster": r"cluster: encoding training queries: \d+/\d+ query",
            "evaluate": r"evaluate: \d+/\d+ step"}


def _assert_progress_in_logs(logs) -> None:
    import re

    for step, pattern in PROGRESS.items():
        files = sorted((logs / step).glob("*.log"))
        assert files, step
        for f in files:
            text = f.read_text()
            if step in ("index", "search") and "bm25" not in text:
                continue  # faiss index / dense search: fast steps without a bar
            assert re.search(pattern, text), (step, f, text[-1500:])


def _shrink(system: dict, tiny_bert) -> dict:
    """A system of the real config on the tiny collection: tiny BERT, a few steps, small batches."""
    s = copy.deepcopy(system)
    if s["type"] in ("dense", "rerank"):
        s["model"] = str(tiny_bert)
    if s["type"] == "dense":
        s["doc_max_length"] = 64
    if s["type"] == "rerank":
        s.update(max_length=64, depth=20)
        if "separate_layers" in s:  # the tiny BERT has two layers: as many segment-separate as it has
            s["separate_layers"] = min(s["separate_layers"], 2)
        s["training"].update(depth=30, min_grade=2)
        for st in s["stages"]:
            st.update(max_steps=2, batch_queries=2, group_size=4, validate_every=0)
    t = s.get("training")
    if s["type"] == "dense" and t:
        t.update(depth=30, min_grade=2, query_max_length=16, passage_max_length=48, clusters={"k": 4})
        t["colbert"] = {"model": str(tiny_bert), "stage": {**t["colbert"]["stage"], "max_steps": 2, "batch_size": 4,
                                                            "negatives_depth": 20}}
        for st in t["stages"]:
            st.update(max_steps=2, batch_size=4, negatives_depth=20, validate_every=0)
    return s


def test_ablation_of_the_config_shares_upstream_and_alpha_reruns_only_dual(workflow, tiny_bert):
    """config.yaml's cranfield-ablation on the tiny collection.

    The plan of all nine students shares one teacher chain, one clustering and one scoring. Three
    of them run -- one per sampler and one per objective, so every code path of the nine runs --
    because every model job costs ~10 s of imports here; the other six differ from these only in
    their parameters, whose keys tests/test_plan.py recomputes from their command lines. After the
    run, a new alpha re-runs only the dual student and what depends on it.
    """
    import yaml

    from conftest import ROOT

    real = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["experiments"]["cranfield-ablation"]
    exp = {"corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "dense-zeroshot",
           "split": {"seed": 1, "test": 10, "valid": 4},
           "systems": {n: _shrink(s, tiny_bert) for n, s in real["systems"].items()}}
    names = [n for n in exp["systems"] if n not in ("dense-zeroshot", "bm25", "rerank")]
    assert names == [f"{a}-{b}" for a in ("random", "tas", "tas-balanced") for b in ("pairwise", "inbatch", "dual")]
    target = "results/ablation/ndcg.tsv"
    workflow.write_config({"experiments": {"ablation": exp}})
    planned = workflow.planned_jobs(target)
    # one re-ranker (2 stages) as teacher, one ColBERT teacher, nine students; one clustering, one scoring
    assert planned["train"] == 2 + 1 + 9 and planned["cluster"] == 1, planned
    assert planned["score"] == 2 and planned["preprocess"] == 1 and planned["encode"] == 10, planned

    run = ["random-pairwise", "tas-inbatch", "tas-balanced-dual"]
    exp["systems"] = {n: s for n, s in exp["systems"].items() if n not in names or n in run}
    workflow.write_config({"experiments": {"ablation": exp}})
    planned = workflow.planned_jobs(target)
    assert planned["train"] == 2 + 1 + 3 and planned["cluster"] == 1 and planned["score"] == 2, planned
    workflow.snakemake(target)
    rows = read_tsv(workflow.path / target)
    assert [r["system"] for r in rows] == list(exp["systems"])
    assert all(int(r["queries"]) == 10 for r in rows)

    exp["systems"]["tas-balanced-dual"]["training"]["stages"][0]["alpha"] = 0.5
    workflow.write_config({"experiments": {"ablation": exp}})
    planned = workflow.planned_jobs(target)
    assert planned == {"train": 1, "encode": 1, "index": 1, "search": 1, "evaluate": 1, "report_evaluation": 1,
                       "report_training": 1, "results": 1}, planned
