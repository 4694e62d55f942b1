"""Bi-encoder (and ColBERT teacher) training task: teacher-scored triples, samplers, in-batch losses.

The training pairs are every (positive, negative) of a training query that the cross-encoder
teacher scored (``irflow score``): positives from the qrels, negatives from the first stage's
top ``negatives_depth`` — the dense analogue of TAS-B's teacher-scored triples file. A sampler
(:mod:`irflow.train.samplers`: random, TAS or TAS-Balanced) draws ``batch_size`` triples per
micro-batch from the step's own generator, so a step's batch is a pure function of
``(seed, step)``: resume is exact with no sampler state to save, and a background thread
(:class:`~irflow.train.samplers.Prefetcher`) samples and tokenises the next steps while the
current one trains.

Objectives (the supervision axis of TAS-B's Table 4):

==============  ===================================================================================
``margin-mse``  pairwise Margin-MSE against the cross-encoder's margins (``pairwise``)
``inbatch``     in-batch Margin-MSE against a ColBERT teacher only
``dual``        ``pair_weight`` · pairwise + ``alpha`` · in-batch (TAS-B's dual supervision)
``infonce``     in-batch contrastive over all positives and negatives of the batch (no teacher)
==============  ===================================================================================

The model only needs ``tokenize``, ``encode`` and the scorers ``score_pairs`` (aligned pairs) and
``inbatch_scores`` (B×B), so the same task trains the ColBERT teacher with pairwise Margin-MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IrflowError

if TYPE_CHECKING:
    import torch

OBJECTIVES = ("margin-mse", "inbatch", "dual", "infonce")
TEACHER_OBJECTIVES = ("margin-mse", "inbatch", "dual")


@dataclass(frozen=True)
class DenseConfig:
    objective: str = "margin-mse"
    sampler: str = "random"
    batch_size: int = 32
    clusters_per_batch: int = 1
    bins: int = 10
    alpha: float = 0.75
    pair_weight: float = 1.0
    inbatch_form: str = "mean"
    temperature: float = 1.0
    negatives_depth: int = 100
    query_max_length: int = 30
    passage_max_length: int = 200
    # GradCache chunk (irflow.train.gradcache): encode the batch this many rows at a time so that a
    # large in-batch batch trains in the memory of a small one; None encodes it in one pass
    cache_chunk: int | None = None

    def key_params(self) -> dict:
        """Only what changes the computation: alpha does not enter a pairwise run's key, etc."""
        k = {"objective": self.objective, "sampler": self.sampler, "batch_size": self.batch_size,
             "negatives_depth": self.negatives_depth, "query_max_length": self.query_max_length,
             "passage_max_length": self.passage_max_length}
        if self.sampler != "random":
            k["clusters_per_batch"] = self.clusters_per_batch
        if self.sampler == "tas-balanced":
            k["bins"] = self.bins
        if self.objective in ("inbatch", "dual"):
            k["inbatch_form"] = self.inbatch_form
        if self.objective == "dual":
            k.update(alpha=self.alpha, pair_weight=self.pair_weight)
        if self.objective == "infonce":
            k["temperature"] = self.temperature
        if self.cache_chunk is not None:
            # keyed only when given: dropout masks are drawn per chunk, so the numbers may differ
            k["cache_chunk"] = self.cache_chunk
        return k

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise IrflowError(f"unknown bi-encoder objective {self.objective!r} ({', '.join(OBJECTIVES)})")
        if self.batch_size < 2 and self.objective != "margin-mse":
            raise IrflowError(f"objective {self.objective} needs in-batch negatives: batch_size >= 2")
        chunk = self.cache_chunk
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise IrflowError(f"cache_chunk must be a positive integer (rows per GradCache chunk), "
                              f"got {self.cache_chunk!r}")


def teacher_pairs(examples, teacher, negatives_depth: int):
    """Arrays (qids, pos, neg, s_pos, s_neg) of every teacher-scored (positive, negative) pair.

    Per example in order, its teacher-scored positives x its teacher-scored negatives among the
    first ``negatives_depth``. Without a teacher (``infonce``) all scores are 0: the pairs are
    qrels positives x first-stage negatives. ``teacher``: :class:`~irflow.train.examples.TeacherScores`
    or qid -> {doc id: score}. Computed over Arrow columns (a join and index arithmetic), so the
    ~10M pairs of 100k queries at depth 100 never exist as Python objects; ids come back as Arrow
    arrays, scores as float64 numpy arrays.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .examples import ExampleTable, TeacherScores

    ex = ExampleTable.of(examples)
    t = ex.table
    teacher = TeacherScores.of(teacher) if teacher is not None else None

    def side(col: str):
        lists = t.column(col).combine_chunks()
        if col == "negatives":
            lists = pc.list_slice(lists, 0, negatives_depth)
        docs = pc.list_flatten(lists)
        owner = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        if teacher is None:
            return owner, docs, np.zeros(len(docs))
        rows = pa.table({"qid": t.column("qid").take(pa.array(owner)), "doc_id": docs,
                         "_i": np.arange(len(docs), dtype=np.int64)})
        hit = rows.join(teacher.table, keys=["qid", "doc_id"], join_type="inner").sort_by("_i")
        i = hit.column("_i").to_numpy()
        return owner[i], hit.column("doc_id").combine_chunks(), hit.column("score").to_numpy()

    po, pdoc, pscore = side("positives")
    no, ndoc, nscore = side("negatives")
    cn = np.bincount(no, minlength=len(ex)).astype(np.int64)
    n_start = np.concatenate(([0], np.cumsum(cn)[:-1])).astype(np.int64)
    reps = cn[po]  # each positive pairs with every negative of its query, in order
    pos_idx = np.repeat(np.arange(len(po), dtype=np.int64), reps)
    within = np.arange(len(pos_idx), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    neg_idx = n_start[po[pos_idx]] + within
    qids = t.column("qid").take(pa.array(po[pos_idx]))
    return (qids, pdoc.take(pa.array(pos_idx)), ndoc.take(pa.array(neg_idx)),
            pscore[pos_idx].astype(np.float64), nscore[neg_idx].astype(np.float64))


class BiEncoderTask:
    def __init__(self, model, pool, sampler, queries: dict[str, str], docs, cfg: DenseConfig, *, seed: int,
                 device: str, colbert=None, validation=None, dist=None):
        from .dist import SINGLE
        from .inbatch import DualTeacherLoss, InBatchInfoNCE, InBatchMarginMSE

        cfg.check()
        if cfg.objective in ("inbatch", "dual") and colbert is None:
            raise IrflowError(f"objective {cfg.objective} needs a ColBERT teacher (--colbert)")
        self.model, self.pool, self.sampler, self.cfg = model, pool, sampler, cfg
        self.queries, self.docs, self.seed, self.device = queries, docs, seed, device
        self.colbert = colbert.eval() if colbert is not None else None
        self.validation = validation
        self.dual = DualTeacherLoss(cfg.alpha, cfg.pair_weight, cfg.inbatch_form)
        self.inbatch = InBatchMarginMSE(cfg.inbatch_form)
        self.infonce = InBatchInfoNCE(cfg.temperature)
        self._prefetch = None
        # data-parallel (irflow.train.dist): every rank samples the global batch and encodes its own
        # slice; in-batch objectives gather all ranks' representations and compute the global loss
        # in every rank (gradients summed across ranks), the pairwise one a mean over the rank's own
        # triples (gradients averaged)
        self.dist = dist or SINGLE
        self.global_loss = cfg.objective != "margin-mse"

    def head_parameters(self):
        return self.model.head_parameters()

    # ------------------------------------------------------------------------------------ batches

    def _tokens(self, model, triples):
        c = self.cfg
        q = model.tokenize([self.queries[t.qid] for t in triples], c.query_max_length)
        # positives and negatives in one forward pass: one padding width, one set of kernels
        d = model.tokenize([self.docs[t.pos] for t in triples] + [self.docs[t.neg] for t in triples],
                           c.passage_max_length)
        return q, d

    def local_triples(self, rng: np.random.Generator):
        """One global micro-batch drawn from the step's generator, and this rank's rows of it.

        Every rank draws the same global batch (so TAS / TAS-Balanced batches still come from the
        sampled clusters, and resume needs no sampler state); rank r keeps the r-th contiguous
        slice, so the ranks' slices in rank order are the global batch.
        """
        from .dist import rank_rows

        triples = self.sampler.batch(rng)
        return triples, rank_rows(len(triples), self.dist)

    def _local_tokens(self, model, triples, sl: slice):
        """This rank's rows of the global batch's tokens: padded to the global width, so that all
        ranks' representations have one shape (gathered) and equal one process's."""
        import torch

        q, d = self._tokens(model, triples)
        if not self.dist.active:
            return q, d
        n = len(triples)
        q = {k: v[sl] for k, v in q.items()}
        d = {k: torch.cat([v[sl], v[n + sl.start:n + sl.stop]]) for k, v in d.items()}
        return q, d

    def _make(self, step: int):
        """Micro-batches of ``step`` (sampled and tokenised): a pure function of (seed, step)."""
        import torch

        from .loop import step_rng

        rng = step_rng(self.seed, step)  # the loop's generator for this step, made ahead of it
        out = []
        for _ in range(self._accum):
            triples, sl = self.local_triples(rng)
            q, d = self._local_tokens(self.model, triples, sl)
            t = torch.tensor([[x.pos_score, x.neg_score] for x in triples], dtype=torch.float32)
            col = self._local_tokens(self.colbert, triples, sl) if self.colbert is not None else None
            # global: the teacher scores and ids of the whole batch (in-batch losses are global)
            ids = ([x.pos for x in triples] + [x.neg for x in triples], [x.qid for x in triples])
            out.append((q, d, t, col, ids, sl))
        return out

    def micro_batches(self, step: int, rng: np.random.Generator, accum: int):
        from .samplers import Prefetcher

        if self._prefetch is None or self._accum != accum:
            self._accum = accum
            if self._prefetch is not None:
                self._prefetch.close()
            self._prefetch = Prefetcher(self._make, step)
        return self._prefetch.get(step)

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    # ------------------------------------------------------------------------------------- loss

    def _encode(self, model, enc):
        """Representations and mask; with ``cache_chunk``: GradCache (student), chunks (teacher)."""
        enc = {k: v.to(self.device) for k, v in enc.items()}
        ids, mask = enc["input_ids"], enc["attention_mask"]
        chunk = self.cfg.cache_chunk
        if chunk is None:
            return model.encode(ids, mask), mask
        from .gradcache import cached_encode, chunked_encode

        if model is self.model:
            return cached_encode(model.encode, (ids, mask), chunk), mask
        return chunked_encode(model.encode, (ids, mask), chunk), mask  # the teacher, under no_grad

    def loss(self, batch) -> tuple[torch.Tensor, int]:
        import torch

        from .dist import gather_rows
        from .inbatch import duplicate_mask, pairwise_margin_mse

        q_enc, d_enc, t, col, ids = batch[:5]
        sl = batch[5] if len(batch) > 5 else slice(None)  # this rank's rows of the global batch
        b = q_enc["input_ids"].shape[0]  # this rank's triples
        m, g = self.model, self.dist
        qv, qm = self._encode(m, q_enc)
        dv, dm = self._encode(m, d_enc)
        pv, nv, pm, nm = dv[:b], dv[b:], dm[:b], dm[b:]
        obj = self.cfg.objective
        t = t.to(self.device)
        if obj == "margin-mse":
            s_pos, s_neg = m.score_pairs(qv, qm, pv, pm), m.score_pairs(qv, qm, nv, nm)
            return pairwise_margin_mse(s_pos, s_neg, t[sl, 0], t[sl, 1]), b
        if g.active:  # the whole batch's representations; gradients flow into this rank's rows only
            qv, qm, pv, pm, nv, nm = (gather_rows(x, g) for x in (qv, qm, pv, pm, nv, nm))
        b_local, b = b, t.shape[0]
        s_pos_mat, s_neg_mat = m.inbatch_scores(qv, qm, pv, pm), m.inbatch_scores(qv, qm, nv, nm)
        # a passage twice in a batch (or a query drawn twice) is no negative of itself
        mask = duplicate_mask(ids[0][:b], ids[0][b:], ids[1])
        if obj == "infonce":
            return self.infonce(s_pos_mat, s_neg_mat, mask=mask.to(self.device)), b_local
        with torch.no_grad():
            cq, cqm = self._encode(self.colbert, col[0])
            cd, cdm = self._encode(self.colbert, col[1])
            if g.active:
                cd = torch.cat([gather_rows(cd[:b_local], g), gather_rows(cd[b_local:], g)])
                cdm = torch.cat([gather_rows(cdm[:b_local], g), gather_rows(cdm[b_local:], g)])
                cq, cqm = gather_rows(cq, g), gather_rows(cqm, g)
            c_pos = self.colbert.inbatch_scores(cq, cqm, cd[:b], cdm[:b])
            c_neg = self.colbert.inbatch_scores(cq, cqm, cd[b:], cdm[b:])
        if obj == "inbatch":
            return self.inbatch(s_pos_mat, s_neg_mat, c_pos, c_neg, mask=mask.to(self.device)), b_local
        return self.dual(s_pos_mat, s_neg_mat, t[:, 0], t[:, 1], c_pos, c_neg,
                         mask=mask.to(self.device)).total, b_local

    def validate(self) -> float:
        if self.validation is None:
            raise IrflowError("validate_every is set but there are no validation queries")
        return self.validation(self.model)


def dense_validation(examples, queries, docs, depth: int, cfg: DenseConfig, device: str, autocast_dtype):
    """nDCG@10 of each validation query over its first-stage top ``depth`` plus all its positives.

    The spec's approximate-retrieval validation: a baseline's top 100 plus every relevant document
    of held-out training queries, scored by the student with the same scorer it trains with. Each
    candidate is encoded once, whichever queries share it.
    """
    import torch

    from ..devices import amp, at_least_fp32
    from .validation import candidates, ndcg10

    cands, qrels = candidates(examples, depth)
    qids = list(cands)
    doc_ids = sorted({d for c in cands.values() for d in c})
    row = {d: i for i, d in enumerate(doc_ids)}
    dev_type = "cuda" if device.startswith("cuda") else "cpu"

    def encode(model, texts, max_length):
        enc = {k: v.to(device) for k, v in model.tokenize(texts, max_length).items()}
        return model.encode(enc["input_ids"], enc["attention_mask"]), enc["attention_mask"]

    def validate(model) -> float:
        model.eval()
        with torch.inference_mode(), amp(dev_type, autocast_dtype):
            qv, qm = encode(model, [queries[q] for q in qids], cfg.query_max_length)
            scores = torch.cat([at_least_fp32(model.inbatch_scores(qv, qm, *encode(
                model, [docs[d] for d in doc_ids[i:i + 64]], cfg.passage_max_length))).cpu()
                                for i in range(0, len(doc_ids), 64)], dim=1)  # [queries, all candidates]
        return ndcg10(qrels, [(q, d, scores[qi, row[d]]) for qi, q in enumerate(qids) for d in cands[q]])

    return validate
