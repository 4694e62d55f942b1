"""``irflow train`` for cross-encoders: examples + texts (+ teacher scores) into a saved model.

The checkpoint directory lives beside the artifact (``<store>/train/.ckpt-<key>``), outside the
temporary directory that a failed run discards, so a killed job resumes where it stopped; it is
removed once the model is published.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .crossencoder import GroupConfig
from .loop import OptimConfig

log = logging.getLogger("irflow")

#: optimisation settings that change how a run is carried out, not what it computes
_NOT_IN_KEY = ("checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainParams:
    model: str | None = "all-MiniLM-L6-v2"  # None when starting from a previous stage (--init)
    head: str | None = None  # mean | seqcls (default: the model card's, else mean)
    max_length: int = 256
    group: GroupConfig = field(default_factory=GroupConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation_depth: int = 30

    def key_params(self) -> dict:
        from ..models.resolve import identity

        optim = {k: v for k, v in asdict(self.optim).items() if k not in _NOT_IN_KEY}
        return {"family": "cross-encoder", "model": identity(self.model) if self.model else None,
                "head": self.head, "max_length": self.max_length, "group": asdict(self.group), "optim": optim,
                "validation_depth": self.validation_depth if self.optim.validate_every else None}


def _validation(examples, queries, docs, depth: int, device: str, autocast_dtype):
    """nDCG@10 of re-ranking each validation query's top ``depth`` candidates plus its positives."""
    import ir_measures

    from ..models.crossencoder import score_pairs

    pairs, qrels = [], []
    for ex in examples:
        cands = list(dict.fromkeys(ex.negatives[:depth] + ex.positives))
        pairs += [(ex.qid, d) for d in cands]
        qrels += [ir_measures.Qrel(ex.qid, d, 1) for d in ex.positives]

    def validate(model) -> float:
        s = score_pairs(model, [queries[q] for q, _ in pairs], [docs[d] for _, d in pairs], device=device,
                        autocast_dtype=autocast_dtype)
        run = [ir_measures.ScoredDoc(q, d, float(x)) for (q, d), x in zip(pairs, s)]
        return float(ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10])

    return validate


def train_cross_encoder(p: TrainParams, init: Path | None, examples_dir: Path, queries_dir: Path, docs_dir: Path,
                        teacher_dir: Path | None, out: Path, ckpt: Path, *, key: str, device: str, autocast_dtype,
                        stop_after: int | None = None) -> dict:
    import pyarrow.parquet as pq

    from ..models.crossencoder import CrossEncoder
    from ..prepare import load_texts
    from ..preprocess import load_examples
    from ..rerank import TEACHER, DocTexts, model_path
    from .crossencoder import CrossEncoderTask
    from .loop import seed_everything, train

    seed_everything(p.optim.seed)  # the fresh head's initialisation is part of the run
    model = CrossEncoder(model_path(str(init)) if init else p.model, head=p.head, max_length=p.max_length)
    model.to(device)
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    docs = DocTexts(docs_dir)
    train_examples = load_examples(examples_dir, "train")
    if teacher_dir is not None:
        t = pq.read_table(Path(teacher_dir) / TEACHER).to_pylist()
        by_q: dict[str, dict[str, float]] = {}
        for r in t:
            by_q.setdefault(r["qid"], {})[r["doc_id"]] = r["score"]
        for ex in train_examples:
            ex.teacher = by_q.get(ex.qid) or ex.teacher
    valid = load_examples(examples_dir, "valid")
    validation = (_validation(valid, queries, docs, p.validation_depth, device, autocast_dtype)
                  if valid and p.optim.validate_every else None)
    task = CrossEncoderTask(model, train_examples, queries, docs, p.group, seed=p.optim.seed, device=device,
                            validation=validation)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    log_path = ckpt.with_name(ckpt.name + ".train_log.jsonl")  # beside: checkpoints replace the directory
    stats = train(task, p.optim, ckpt=ckpt, log_path=log_path, device=device, autocast_dtype=autocast_dtype,
                  stop_after=stop_after)
    model.save(out / "model", {"artifact_key": key, "objective": p.group.objective})
    shutil.copy2(log_path, out / "train_log.jsonl")
    stats["train_queries"] = len(task.examples)
    return stats
