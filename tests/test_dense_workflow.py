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
    workflow.snakemake(target)
    rows = read_tsv(workflow.path / target)
    assert [r["system"] for r in rows] == ["bm25", "dense-zeroshot", "dense", "rerank"]
    assert all(int(r["queries"]) == 10 for r in rows)
    assert workflow.planned_jobs(target) == {}

    # alpha only changes the dual stage: it re-trains, re-encodes, re-searches, re-ranks, re-evaluates
    changed = copy.deepcopy(config)
    changed["experiments"]["tiny-dense"]["systems"]["dense"]["training"]["stages"][1]["alpha"] = 0.5
    workflow.write_config(changed)
    planned = workflow.planned_jobs(target)
    assert planned == {"train": 1, "encode": 1, "index": 1, "search": 1, "rerank": 1, "evaluate": 1,
                       "results": 1}, planned
