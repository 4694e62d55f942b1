"""Cross-encoder training task: per-query groups drawn from the training examples.

A group is one query with ``group_size`` documents. For ``lce`` it is one positive drawn uniformly
from the query's relevant documents and negatives drawn uniformly without replacement from the
non-relevant documents of the first stage's top ``negatives_depth`` (the localized contrastive
estimation of Gao et al., the stage-1 "CL" of Pezzuti et al.). For the teacher objectives
(``kl``, ``ranknet``, ``margin-mse``) the targets are teacher scores: ``margin-mse`` keeps the
positive in column 0, the others draw ``group_size`` teacher-scored candidates.

Queries are visited in epoch permutations that depend only on the seed and the epoch, and groups
are drawn from the step's own generator, so a step's batch is a pure function of the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..devices import at_least_fp32
from ..errors import IrflowError
from .examples import Example, ExampleTable  # noqa: F401  (Example: re-exported)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GroupConfig:
    objective: str = "lce"
    batch_queries: int = 4
    group_size: int = 8
    negatives_depth: int = 100
    temperature: float = 1.0


class CrossEncoderTask:
    def __init__(self, model, examples: Sequence[Example], queries: dict[str, str], docs, cfg: GroupConfig, *,
                 seed: int, device: str, validation=None, dist=None):
        from .dist import SINGLE
        from .losses import make_loss

        self.model = model
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.queries = queries
        self.docs = docs  # doc id -> text (a mapping)
        self.validation = validation
        # data-parallel: each rank trains on its slice of every global batch; the loss is a mean over
        # the rank's own groups, so the gradients are averaged across ranks (global_loss False)
        self.dist = dist or SINGLE
        self.global_loss = False
        examples = ExampleTable.of(examples)  # Arrow columns: an example is built when a step draws it
        n = examples.counts()
        usable = np.ones(len(examples), dtype=bool)
        if cfg.objective in ("kl", "ranknet", "margin-mse"):
            usable &= n["teacher"] > 0
        if cfg.objective in ("lce", "margin-mse"):
            usable &= (n["positives"] > 0) & (n["negatives"] > 0)
        if not usable.any():
            raise IrflowError(f"no training query has what objective {cfg.objective!r} needs "
                              "(a positive and negatives, or teacher scores)")
        self.examples = examples if usable.all() else examples.select(np.flatnonzero(usable))  # no copy if all
        kwargs = {"temperature": cfg.temperature} if cfg.objective in ("lce", "kl") else {}
        self.loss_fn = make_loss(cfg.objective, **kwargs)

    def head_parameters(self):
        return self.model.head_parameters()

    # ------------------------------------------------------------------------------------ batches

    def _query_at(self, position: int) -> Example:
        n = len(self.examples)
        epoch, offset = divmod(position, n)
        perm = np.random.default_rng([self.seed, 7919, epoch]).permutation(n)
        return self.examples[perm[offset]]

    def _group(self, ex: Example, rng: np.random.Generator) -> tuple[list[str], list[float]]:
        g, obj = self.cfg.group_size, self.cfg.objective
        if obj == "lce":
            pos = ex.positives[rng.integers(len(ex.positives))]
            pool = ex.negatives[: self.cfg.negatives_depth]
            negs = [pool[i] for i in rng.choice(len(pool), size=min(g - 1, len(pool)), replace=False)]
            return [pos] + negs, [1.0] + [0.0] * len(negs)
        t = ex.teacher or {}
        if obj == "margin-mse":
            scored_pos = [d for d in ex.positives if d in t] or ex.positives
            pos = scored_pos[rng.integers(len(scored_pos))]
            pool = [d for d in ex.negatives[: self.cfg.negatives_depth] if d in t]
            negs = [pool[i] for i in rng.choice(len(pool), size=min(g - 1, len(pool)), replace=False)]
            docs = [pos] + negs
        else:
            cands = sorted(t)
            docs = [cands[i] for i in rng.choice(len(cands), size=min(g, len(cands)), replace=False)]
        return docs, [float(t.get(d, 0.0)) for d in docs]

    def micro_batches(self, step: int, rng: np.random.Generator, accum: int):
        """The step's global groups, drawn in every rank alike, and this rank's slice of them."""
        from .dist import rank_rows

        bq = self.cfg.batch_queries
        start = step * accum * bq
        sl = rank_rows(bq, self.dist)
        batches = []
        for a in range(accum):
            groups = [self._group(self._query_at(start + a * bq + i), rng) for i in range(bq)]
            qids = [self._query_at(start + a * bq + i).qid for i in range(bq)]
            batches.append((qids[sl], groups[sl]))
        return batches

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        import torch

        qids, groups = batch
        g = max(len(docs) for docs, _ in groups)
        qs, ds, where = [], [], []
        for r, (qid, (docs, _)) in enumerate(zip(qids, groups)):
            for c, d in enumerate(docs):
                qs.append(self.queries[qid])
                ds.append(self.docs[d])
                where.append(r * g + c)
        enc = {k: v.to(self.device) for k, v in self.model.tokenize(qs, ds).items()}
        flat = self.model(**enc)
        scores = torch.zeros(len(groups) * g, dtype=flat.dtype, device=flat.device)
        scores = scores.index_put((torch.tensor(where, device=flat.device),), flat).view(len(groups), g)
        target = torch.zeros(len(groups), g, dtype=torch.float32)
        mask = torch.zeros(len(groups), g, dtype=torch.bool)
        for r, (docs, t) in enumerate(groups):
            target[r, : len(t)] = torch.tensor(t)
            mask[r, : len(docs)] = True
        return self.loss_fn(at_least_fp32(scores), target.to(flat.device), mask.to(flat.device)), len(qs)

    def validate(self) -> float:
        if self.validation is None:
            raise IrflowError("validate_every is set but there are no validation queries")
        return self.validation(self.model)
