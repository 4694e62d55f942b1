"""Distil a hybrid teacher (zero-shot dense + BM25) into the bi-encoder on DL20's unjudged queries.

Why: on msmarco-dl20 the only signal found to add to the zero-shot bi-encoder on held-out queries
is lexical (BM25 interpolated into it), and the only training queries beyond the experiment's 24
are the 146 DL 2020 queries that NIST never judged. The teacher needs no judgments, so the 32
judged non-test queries stay a clean validation set for choosing the steps, and the 22 test
queries choose nothing.

- Teacher, per query: ``20 cos(q, d) + 20 r lam / (1 - lam) mm_bm25(d)``, where ``r`` is the spread
  of the zero-shot cosines over the dense top 1000 and ``mm_bm25`` BM25 min-max normalised over
  its top 1000 (0 below it). That ranks exactly as ``(1 - lam) mm_dense + lam mm_bm25`` and is in
  the student's own units (scale 20), so the student starts at the dense part and KL teaches
  only the lexical one.
- Candidates: the zero-shot dense top 50 and the BM25 top 20 of each unjudged query; a group is
  the teacher's dense top 1 and G - 1 others drawn at random.
- Measure: as ``dl20_cv.py`` (nDCG@10 of re-ranking ``dense-zeroshot``'s top 30 with the student).

Run from the workflow root after ``snakemake --cores 2 results/msmarco-dl20/ndcg.tsv``::

    python studies/dl20_hybrid.py --config config/config.yaml --lam 0.2 --steps 25,50

About 15 s a step on two cores (8 queries x 16 passages, bf16 autocast).
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from pathlib import Path

import numpy as np
import torch

from dl20_cv import EXPERIMENT, Study, _walk, checkpoints


def _mm(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / max(float(x.max() - x.min()), 1e-9)


class Hybrid:
    def __init__(self, study: Study):
        import ir_datasets
        import pyarrow.parquet as pq

        from irflow.index import bm25, dense

        self.study = study
        plan = study.plan
        systems = plan.systems[EXPERIMENT]
        bdir = Path(plan.path(_walk(systems["bm25"], "index")))
        self.ddir = Path(plan.path(_walk(systems["dense-zeroshot"], "index")))
        bids = pq.read_table(bdir / "ids.parquet").column("id").to_pylist()
        self.dids = pq.read_table(self.ddir / "ids.parquet").column("id").to_pylist()
        self.docs_dir = plan.path(_walk(systems["dense"], "train").inputs["docs"])
        # every DL 2020 query: the judged ones of the experiment and the ones NIST never judged
        self.queries = {q.query_id: q.text for q in ir_datasets.load("msmarco-passage/trec-dl-2020").queries_iter()}
        self.unjudged = sorted(q for q in self.queries if q not in study.qrels)
        qids = sorted(self.queries)
        bs, br = bm25.search(bdir, [self.queries[q] for q in qids], 1000)
        qv = study.embed(study.zeroshot, [self.queries[q] for q in qids], 64).float().numpy()
        self.qv = dict(zip(qids, qv / np.linalg.norm(qv, axis=1, keepdims=True)))
        ds, dr = dense.search(self.ddir, np.stack([self.qv[q] for q in qids]), 1000)
        self.bm25 = {q: dict(zip([bids[r] for r in br[i][br[i] >= 0]], _mm(bs[i][br[i] >= 0])))
                     for i, q in enumerate(qids)}
        self.dense = {q: dict(zip([self.dids[r] for r in dr[i]], ds[i])) for i, q in enumerate(qids)}
        self.bm25_top = {q: [bids[r] for r in br[i][:20] if r >= 0] for i, q in enumerate(qids)}
        self.dense_top = {q: [self.dids[r] for r in dr[i][:50]] for i, q in enumerate(qids)}

    def interpolated(self, q: str, lam: float, cands=None) -> dict[str, float]:
        """``(1 - lam) mm_dense + lam mm_bm25`` over both top 1000 (irflow's CombSUM), kept to ``cands``."""
        from irflow.fuse import combsum

        runs = [{q: list(run[q].items())} for run in (self.dense, self.bm25)]
        fused = combsum(runs, norm="minmax", weights=[1 - lam, lam])[q]
        return {d: s for d, s in fused if cands is None or d in cands}

    def ndcg(self, runs: dict, qids: list[str]) -> float:
        import ir_measures

        qrels = [ir_measures.Qrel(q, d, g) for q in qids for d, g in self.study.qrels[q].items()]
        scored = [ir_measures.ScoredDoc(q, d, float(s)) for q in qids for d, s in runs[q].items()]
        return float(np.mean([m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, scored)]))

    def teacher(self, lam: float) -> tuple[dict, dict]:
        """Candidates and teacher scores of the unjudged queries, in the student's units."""
        from irflow.index import faisslib
        from irflow.rerank import DocTexts

        index = faisslib.load().read_index(str(self.ddir / "index.faiss"))
        row = {d: i for i, d in enumerate(self.dids)}
        cands, scores = {}, {}
        for q in self.unjudged:
            c = list(dict.fromkeys(self.dense_top[q] + self.bm25_top[q]))
            cos = np.stack([index.reconstruct(row[d]) for d in c]).astype(np.float32) @ self.qv[q]
            spread = max(self.dense[q].values()) - min(self.dense[q].values())
            cands[q] = c
            scores[q] = 20 * cos + 20 * spread * lam / (1 - lam) * np.array([self.bm25[q].get(d, 0.0) for d in c])
        need = sorted({d for c in cands.values() for d in c} - set(self.study.docs))
        self.study.docs.update(zip(need, DocTexts(self.docs_dir, ids=need).texts(need)))
        return cands, scores


def main() -> None:
    from irflow.train.losses import make_loss

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--lam", type=float, default=0.2, help="weight of BM25 in the teacher")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--queries", type=int, default=8, help="queries per step")
    ap.add_argument("--group", type=int, default=16, help="passages per query and step")
    ap.add_argument("--steps", default="25,50", help="evaluate after these many steps (comma-separated)")
    args = ap.parse_args()
    torch.manual_seed(0)
    study = Study(args.config)
    h = Hybrid(study)
    nontest, test = sorted(study.examples), study.test
    print(f"{len(h.queries)} DL 2020 queries: {len(h.unjudged)} unjudged (training), {len(nontest)} judged non-test "
          f"(choose), {len(test)} test", flush=True)
    for lam in (0.0, 0.1, 0.2, 0.3):
        both = nontest + test
        full = {q: h.interpolated(q, lam) for q in both}
        top30 = {q: h.interpolated(q, lam, set(study.run[q])) for q in both}
        print(f"interpolation lam {lam}: full non-test {h.ndcg(full, nontest):.4f} test {h.ndcg(full, test):.4f}; "
              f"dense top 30 re-ranked non-test {h.ndcg(top30, nontest):.4f} test {h.ndcg(top30, test):.4f}",
              flush=True)
    cands, target = h.teacher(args.lam)

    def report(step, model, extra=""):
        v = np.mean(list(study.ndcg(model, nontest).values()))
        t = np.mean(list(study.ndcg(model, test).values()))
        print(f"lam {args.lam} step {step}: non-test {v:.4f} test {t:.4f}{extra}", flush=True)

    model = copy.deepcopy(study.zeroshot)
    report(0, model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    kl, rng, done, t0 = make_loss("kl"), random.Random(42), 0, time.time()
    b, g = args.queries, args.group
    for stop in checkpoints(args.steps):
        model.train()
        for _ in range(stop - done):
            batch = rng.sample(h.unjudged, b)
            groups = [[0] + sorted(rng.sample(range(1, len(cands[q])), g - 1)) for q in batch]
            qe = study.embed(model, [h.queries[q] for q in batch], 30, grad=True)
            de = study.embed(model, [study.docs[cands[q][j]] for q, grp in zip(batch, groups) for j in grp], 200,
                             grad=True)
            s = model.inbatch_scores(qe, None, de, None)
            scores = torch.stack([s[i, i * g:(i + 1) * g] for i in range(b)]).float()
            t = torch.tensor(np.stack([target[q][grp] for q, grp in zip(batch, groups)]), dtype=torch.float32)
            loss = kl(scores, t, torch.ones_like(t, dtype=torch.bool))
            opt.zero_grad()
            loss.backward()
            opt.step()
        done = stop
        report(stop, model, f" (training loss {loss.item():.4f}, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
