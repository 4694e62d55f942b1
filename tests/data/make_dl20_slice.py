"""Rebuild ``dl20_slice.json.gz``, the real-data fixture of ``tests/test_learning_dl20.py``.

Every training and validation query of the msmarco-dl20 experiment (irflow's own split of the 54
judged DL 2020 queries: seed 42, test 0.4, valid 0.15, so 24 training and 8 validation queries;
never a test query), each with up to 10 judged relevant passages (grade >= 1, best first) and 20
judged non-relevant ones drawn with a fixed seed, all of them in the 30,005-passage subset.

A fixture because a fresh clone without ``../shared`` must run the learning tests, and because
the tests should not depend on how ir_datasets builds its doc store. Run it with an
``IR_DATASETS_HOME`` that holds the offline MS MARCO subset (a writable copy of
``../shared/data/irds_home``, or the unpacked ``tests/data/irds/msmarco-passage.tar.xz``):

    IR_DATASETS_HOME=/tmp/irds python tests/data/make_dl20_slice.py
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

OUT = Path(__file__).with_name("dl20_slice.json.gz")
QUERIES = "msmarco-passage/trec-dl-2020/judged"
SPLIT = {"seed": 42, "test": 0.4, "valid": 0.15}  # config/config.yaml, experiment msmarco-dl20
RELEVANT, NON_RELEVANT, SEED = 10, 20, 0


def main() -> None:
    import ir_datasets

    from irflow.data.split import assign

    ds = ir_datasets.load(QUERIES)
    queries = {q.query_id: q.text for q in ds.queries_iter()}
    parts = assign(queries, seed=SPLIT["seed"], test=SPLIT["test"], valid=SPLIT["valid"])
    grades: dict[str, dict[str, int]] = {}
    for r in ds.qrels_iter():
        grades.setdefault(r.query_id, {})[r.doc_id] = r.relevance
    judged = {d for g in grades.values() for d in g}
    corpus = {d.doc_id: d.text for d in ir_datasets.load("msmarco-passage").docs_iter() if d.doc_id in judged}
    rng = random.Random(SEED)
    keep: dict[str, dict[str, int]] = {}
    for q in sorted(q for q, p in parts.items() if p != "test"):
        g = {d: x for d, x in grades[q].items() if d in corpus}
        rel = sorted((d for d in g if g[d] >= 1), key=lambda d: (-g[d], d))[:RELEVANT]
        non = sorted(d for d in g if g[d] < 1)
        keep[q] = {d: g[d] for d in rel + sorted(rng.sample(non, min(NON_RELEVANT, len(non))))}
    slice_ = {
        "about": "A fixed slice of MS MARCO passages with TREC DL 2020 judgments (irds:msmarco-passage, "
                 f"irds:{QUERIES}; MS MARCO is released by Microsoft for non-commercial research): every "
                 "training and validation query of the msmarco-dl20 experiment (split seed 42, test 0.4, "
                 "valid 0.15), never its test queries. Per query: up to 10 judged relevant passages "
                 "(grade >= 1, best first) and 20 judged non-relevant ones. Made by make_dl20_slice.py.",
        "train": sorted(q for q in keep if parts[q] == "train"),
        "valid": sorted(q for q in keep if parts[q] == "valid"),
        "queries": {q: queries[q] for q in keep},
        "qrels": keep,
        "docs": {d: corpus[d] for d in sorted({d for g in keep.values() for d in g})},
    }
    with gzip.GzipFile(OUT, "wb", mtime=0) as f:
        f.write(json.dumps(slice_, sort_keys=True).encode())
    print(f"{OUT.name}: {len(slice_['train'])} training, {len(slice_['valid'])} validation queries, "
          f"{len(slice_['docs'])} passages")


if __name__ == "__main__":
    main()
