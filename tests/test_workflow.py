"""The workflow end to end on the tiny synthetic collection: real Snakemake, real models, real faiss.

Also the content-addressing promises: an identical second call runs nothing; changing only the
faiss factory re-runs only what depends on the index; reverting finds the old artifacts.
"""

from __future__ import annotations

import csv

STORE_RULES = {"prepare", "encode", "index", "search", "fuse", "evaluate"}


def tiny_config(factory: str = "Flat") -> dict:
    return {
        "experiments": {
            "tiny": {
                "corpus": "synthetic:tiny",
                "queries": "synthetic:tiny",
                "baseline": "bm25",
                "systems": {
                    "bm25": {"type": "bm25"},
                    "dense": {"type": "dense", "model": "all-MiniLM-L6-v2", "shards": 2, "index": factory,
                              "doc_max_length": 128},
                    "fusion": {"type": "fusion", "runs": ["bm25", "dense"]},
                },
            }
        }
    }


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_workflow_runs_and_reruns_only_what_changed(workflow):
    workflow.write_config(tiny_config())
    target = "results/tiny/ndcg.tsv"
    workflow.snakemake(target)

    rows = read_tsv(workflow.path / target)
    assert [r["system"] for r in rows] == ["bm25", "dense", "fusion"]
    for r in rows:
        assert 0.0 < float(r["nDCG@10"]) < 1.0
        assert int(r["queries"]) == 30
    assert rows[0]["p_value"] == "" and rows[1]["p_value"] != ""
    metrics = read_tsv(workflow.path / "results/tiny/metrics.tsv")
    assert {(m["system"], m["measure"]) for m in metrics} >= {("dense", "nDCG@10"), ("fusion", "AP(rel=2)")}

    # An identical second call has nothing to do.
    assert workflow.planned_jobs(target) == {}

    # Changing only the faiss factory: index, search, fusion, evaluation and the result copy.
    workflow.write_config(tiny_config("IVF4,Flat"))
    planned = workflow.planned_jobs(target)
    assert planned == {"index": 1, "search": 1, "fuse": 1, "evaluate": 1, "report_evaluation": 1,
                       "results": 1}, planned
    workflow.snakemake(target)

    # Reverting finds every old artifact: no store job runs, only the human-facing copy is refreshed.
    workflow.write_config(tiny_config())
    planned = workflow.planned_jobs(target)
    assert not STORE_RULES & set(planned), planned
    workflow.snakemake(target)
    assert read_tsv(workflow.path / target) == rows


def test_two_stage_reranker_chain_in_the_workflow(workflow, tiny_bert):
    """preprocess -> train (LCE) -> score (stage 1 as teacher) -> train (KL) -> rerank -> evaluate."""
    stage = {"batch_queries": 2, "group_size": 4, "max_steps": 4, "lr": 1e-3}
    config = {"experiments": {"tiny-ft": {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "bm25",
        "split": {"seed": 1, "test": 10, "valid": 5},
        "systems": {
            "bm25": {"type": "bm25"},
            "rerank": {"type": "rerank", "first_stage": "bm25", "depth": 20, "model": str(tiny_bert),
                       "max_length": 64, "training": {"first_stage": "bm25", "depth": 30, "min_grade": 2},
                       "stages": [{"objective": "lce", **stage},
                                  {"objective": "kl", "teacher": "previous", **stage}]},
        },
    }}}
    workflow.write_config(config)
    target = "results/tiny-ft/ndcg.tsv"
    planned = workflow.planned_jobs(target)
    assert planned["train"] == 2 and planned["score"] == 1 and planned["rerank"] == 1, planned
    workflow.snakemake(target)
    rows = read_tsv(workflow.path / target)
    assert [r["system"] for r in rows] == ["bm25", "rerank"]
    assert all(int(r["queries"]) == 10 for r in rows)  # the held-out test queries only
    assert workflow.planned_jobs(target) == {}

    # Stage 2's key includes stage 1's: changing stage 1 re-trains both, re-scores and re-ranks.
    config["experiments"]["tiny-ft"]["systems"]["rerank"]["stages"][0]["max_steps"] = 5
    workflow.write_config(config)
    planned = workflow.planned_jobs(target)
    assert planned == {"train": 2, "score": 1, "rerank": 1, "evaluate": 1, "report_evaluation": 1,
                       "report_training": 1, "results": 1}, planned
