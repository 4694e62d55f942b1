"""A recipe learns on real data: a few steps on real DL20 training queries beat the untrained model.

The slice (``data/dl20_slice.json.gz``, made by ``data/make_dl20_slice.py``) is every training
(24) and validation (8) query of the msmarco-dl20 experiment (never its test queries), each with up
to 10 judged relevant and 20 judged non-relevant real MS MARCO passages. Validation re-ranks each
validation query's 30 judged passages and measures graded nDCG@10, as
:mod:`irflow.train.validation` does in the pipeline. The synthetic demo was written to be
learnable; this slice was not, so a recipe that passes here learns something real (the
cross-encoder from a teacher, from its untrained joint start; the bi-encoder from the qrels, from
the untrained CLS state). Both start below the zero-shot mean-pooled encoder: these tests check
that the recipes learn, not that they beat it (the README's findings).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

SLICE = Path(__file__).parent / "data" / "dl20_slice.json.gz"


class _Texts(dict):
    """doc id -> text, with the bulk lookup of :class:`irflow.rerank.DocTexts` that teachers use."""

    def texts(self, ids) -> list[str]:
        return [self[d] for d in ids]


@pytest.fixture(scope="module")
def dl20() -> dict:
    with gzip.open(SLICE, "rt") as f:
        s = json.load(f)
    assert not set(s["train"]) & set(s["valid"])
    s["docs"] = _Texts(s["docs"])
    return s


def _examples(s: dict, part: str):
    """Positives: grade >= 2 (TREC DL's relevant); negatives: the judged non-relevant passages."""
    from irflow.train.crossencoder import Example

    out = []
    for q in s[part]:
        grades = s["qrels"][q]
        out.append(Example(q, sorted(d for d, g in grades.items() if g >= 2),
                           sorted(d for d, g in grades.items() if g < 2), None, dict(grades)))
    return out


def _train(task, tmp_path: Path, **optim) -> dict:
    from irflow.train.loop import OptimConfig, train

    cfg = OptimConfig(precision="fp32", seed=42, checkpoint_every=1000, **optim)
    return train(task, cfg, ckpt=tmp_path / "ckpt", log_path=tmp_path / "log.jsonl", device="cpu", progress=False)


def test_cross_encoder_learns_on_dl20(dl20, tmp_path):
    """A plain cross-encoder (every layer attends across query and passage, cosine head on the
    segment means) built from all-MiniLM-L6-v2 starts well below the sentence encoder it comes
    from, which never saw a joint input; KL distillation from that encoder's scores over the
    training queries' judged passages must lift it on the held-out validation queries. The teacher
    is stronger than the student here, which is what the recipe needs (README: msmarco-dl20
    findings). 0.407 -> 0.500 after 24 steps; with seeds 7 / 1 / 3 0.482 / 0.484 / 0.497. The slice's
    first version had 8 training queries: there the same recipe went up or down with the seed."""
    import torch

    from irflow.models.crossencoder import CrossEncoder
    from irflow.score import _bi_encoder_scores
    from irflow.train.crossencoder import CrossEncoderTask, GroupConfig
    from irflow.train.step import _validation

    torch.manual_seed(0)
    train = _examples(dl20, "train")
    pairs = [(ex.qid, d) for ex in train for d in sorted(ex.grades)]
    scores = _bi_encoder_scores("all-MiniLM-L6-v2", pairs, dl20["queries"], dl20["docs"], 160, "cpu", None)
    for ex in train:
        ex.teacher = {d: x for (q, d), x in zip(pairs, scores) if q == ex.qid}
    model = CrossEncoder("all-MiniLM-L6-v2", head="cosine", max_length=160, separate_layers=0)
    validate = _validation(_examples(dl20, "valid"), dl20["queries"], dl20["docs"], 30, "cpu", None)
    before = validate(model)
    task = CrossEncoderTask(model, train, dl20["queries"], dl20["docs"],
                            GroupConfig("kl", batch_queries=4, group_size=8, negatives_depth=30), seed=42,
                            device="cpu")
    _train(task, tmp_path, lr=5e-5, max_steps=24)
    after = validate(model)
    assert after > before + 0.02, (before, after)


def test_bi_encoder_learns_on_dl20(dl20, tmp_path):
    """In-batch InfoNCE on the qrels (grade >= 2 against judged non-relevant passages) from the
    encoder's CLS state, which all-MiniLM-L6-v2 never trained: a few steps must make it rank the
    held-out validation queries' judged passages better (the mean-pooled zero-shot encoder is too
    strong to move measurably on the slice's training queries in a CI budget: see the README's findings).
    Here 0.479 -> 0.535."""
    import torch

    from irflow.models.dense import DenseModel
    from irflow.train.biencoder import BiEncoderTask, DenseConfig, dense_validation, teacher_pairs
    from irflow.train.samplers import PairPool, make_sampler

    torch.manual_seed(0)
    cfg = DenseConfig("infonce", "random", batch_size=16, negatives_depth=30, query_max_length=30,
                      passage_max_length=160)
    model = DenseModel("all-MiniLM-L6-v2", pooling="cls")
    validate = dense_validation(_examples(dl20, "valid"), dl20["queries"], dl20["docs"], 30, cfg, "cpu", None)
    before = validate(model)
    train = _examples(dl20, "train")
    pool = PairPool.from_arrays(*teacher_pairs(train, None, cfg.negatives_depth))
    task = BiEncoderTask(model, pool, make_sampler("random", pool, None, cfg.batch_size), dl20["queries"],
                         dl20["docs"], cfg, seed=42, device="cpu")
    try:
        _train(task, tmp_path, lr=1e-4, weight_decay=0.0, max_steps=12)
    finally:
        task.close()
    after = validate(model)
    assert after > before + 0.02, (before, after)
