#!/usr/bin/env python
"""Encoding throughput of irflow against sentence-transformers' default ``encode``, and what bf16 costs.

One run, one process, the same texts and the same model (all-MiniLM-L6-v2 by default):

* **sentence-transformers**: ``SentenceTransformer(path).encode(texts)`` with every default
  (batch_size 32, fp32, the model's own ``max_seq_length`` of 256), tokenisation included;
* **irflow**: what ``irflow prepare --max-length 256`` + ``irflow encode --precision auto`` do:
  the tokenizer call of ``prepare`` (chunks of 2048 texts), then :class:`irflow.models.biencoder.Encoder`
  with the precision ``--precision`` resolves to on this CPU (bf16 where the CPU has AVX512-BF16/AMX),
  token-budget length buckets. Tokenisation is timed too, as sentence-transformers' time includes it.

Both are warmed up first. The corpus is cut into ``--chunks`` interleaved slices, timed alternately
(ST then irflow, then irflow then ST, ...), so a neighbour process that steals the CPU for a while
slows both sides rather than one: the script prints the throughput of each over the whole corpus,
their ratio, and the median and range of the per-slice ratios. It also prints how far the two
embedding sets are apart (max abs difference, mean and min cosine).

Then, when the dataset has queries and qrels (irds:vaswani does), retrieval quality: exact
inner-product search over the corpus with the vectors of irflow at the resolved precision (stored as
float16, as ``emb.npy`` stores them), of irflow fp32 and of sentence-transformers, all 93 vaswani
queries, nDCG@10 with ir_measures; the bf16 - fp32 difference must be within ``--tolerance``.

    IR_DATASETS_HOME=/path/to/irds_home python bench/bench_encode.py [--dataset irds:vaswani]
        [--limit N] [--threads 2] [--check]

Environment: ``IR_DATASETS_HOME`` is where ir_datasets finds (or would download) its files; for
vaswani point it at a directory holding ``vaswani/{docs,queries,qrels}.txt`` (``--irds-home`` sets
it too). Machine load matters: the script prints the load average before and after and warns when
other processes compete for the cores. Full vaswani (11,429 passages) takes about 3-4 minutes on 2
cores; ``--limit`` encodes only the first N passages (quality is then measured on that sub-corpus).
Exit status 1 with ``--check`` when the ratio is below ``--min-ratio`` or nDCG@10 moved by more than
the tolerance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_load, header, log, start_torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="irds:vaswani", help="irds:<id>, synthetic:<name> or a file (default %(default)s)")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="bi-encoder (default %(default)s, the packaged copy)")
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N passages")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both (default %(default)s)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="irflow's precision, resolved as `irflow encode` does (default %(default)s)")
    ap.add_argument("--autocast-only", action="store_true",
                    help="bf16 by autocast over fp32 weights instead of the Encoder's default (bf16 weights on the CPU)")
    ap.add_argument("--max-length", type=int, default=None,
                    help="irflow's truncation length (default: sentence-transformers' max_seq_length, 256)")
    ap.add_argument("--max-tokens", type=int, default=None, help="irflow's batch token budget (default: the Encoder's)")
    ap.add_argument("--max-batch", type=int, default=None, help="irflow's batch size cap (default: the Encoder's)")
    ap.add_argument("--chunks", type=int, default=8, help="interleaved timing slices per round (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=1, help="timing rounds over the whole corpus (default %(default)s)")
    ap.add_argument("--query-max-length", type=int, default=64, help="as `irflow search` (default %(default)s)")
    ap.add_argument("--no-quality", action="store_true", help="skip the retrieval-quality check")
    ap.add_argument("--tolerance", type=float, default=0.005, help="max |nDCG@10 bf16 - fp32| (default %(default)s)")
    ap.add_argument("--min-ratio", type=float, default=1.8, help="speed-up the check asks for (default %(default)s)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a check fails")
    ap.add_argument("--irds-home", default=None, help="sets IR_DATASETS_HOME (default: the environment's)")
    return ap.parse_args(argv)


def load(spec: str, kind: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    """Ids and texts, whitespace-normalised exactly as ``irflow prepare`` stores them."""
    from irflow.data.sources import iter_texts

    ids, texts = [], []
    for rid, text, _, _ in iter_texts(spec, kind):
        if limit is not None and len(ids) >= limit:
            break
        ids.append(rid)
        texts.append(" ".join(text.split()))
    return ids, texts


def tokenize_like_prepare(tok, texts: list[str], max_length: int, chunk: int = 2048) -> list[list[int]]:
    """The tokenizer call of :func:`irflow.prepare.prepare`, in its chunks."""
    seqs: list[list[int]] = []
    for i in range(0, len(texts), chunk):
        seqs.extend(tok(texts[i : i + chunk], add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"])
    return seqs


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def exact_run(doc_ids, doc_vecs: np.ndarray, query_ids, query_vecs: np.ndarray, k: int = 1000) -> dict:
    scores = np.asarray(query_vecs, dtype=np.float32) @ np.asarray(doc_vecs, dtype=np.float32).T
    k = min(k, scores.shape[1])
    run = {}
    for qi, qid in enumerate(query_ids):
        top = np.argpartition(-scores[qi], k - 1)[:k]
        run[qid] = {doc_ids[j]: float(scores[qi, j]) for j in top}
    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    torch = start_torch(args.threads, args.irds_home)

    from sentence_transformers import SentenceTransformer

    from irflow.devices import resolve_dtype
    from irflow.models import biencoder
    from irflow.models.biencoder import Encoder, EncoderSpec
    from irflow.models.resolve import load_tokenizer, resolve

    path = resolve(args.model)
    load0 = header("bench_encode", args.threads, "the interleaving")

    doc_ids, texts = load(args.dataset, "docs", args.limit)
    n = len(texts)
    log(f"dataset {args.dataset}: {n} passages, model {args.model} ({path})")

    st = SentenceTransformer(path, device="cpu")
    max_length = args.max_length or st.max_seq_length
    dtype = resolve_dtype("cpu", args.precision)
    prec = "bf16" if dtype == torch.bfloat16 else "fp32"
    enc = Encoder(EncoderSpec(args.model), device="cpu", autocast_dtype=dtype,
                  cast_weights=False if args.autocast_only else None)
    tok = load_tokenizer(args.model)
    max_tokens = args.max_tokens or biencoder.default_max_tokens("cpu")
    max_batch = args.max_batch or biencoder.DEFAULT_MAX_BATCH
    log(f"sentence-transformers: encode() defaults: batch_size 32, fp32, max_seq_length {st.max_seq_length}")
    how = ("bf16 weights" if enc.weight_dtype is not None else
           "fp32 weights + bf16 autocast" if enc.autocast_dtype is not None else "fp32 weights")
    log(f"irflow: precision {args.precision} -> {prec} ({how}), "
        f"max_length {max_length}, max_tokens {max_tokens}, max_batch {max_batch}")

    def run_st(sub):
        return st.encode(sub)

    def run_irflow(sub, e=enc):
        seqs = tokenize_like_prepare(tok, sub, max_length)
        return e.encode_ids(seqs, max_tokens=max_tokens, max_batch=max_batch)

    # warm-up: a spread of lengths, both paths
    by_len = np.argsort([len(t) for t in texts])
    warm = [texts[i] for i in by_len[np.linspace(0, n - 1, min(n, 192)).astype(int)]]
    for _ in range(2):
        run_st(warm)
        run_irflow(warm)

    # interleaved, alternating slices of one random permutation (each slice has the corpus' length mix)
    perm = np.random.default_rng(0).permutation(n)
    slices = [s for s in np.array_split(perm, max(1, min(args.chunks, n))) if len(s)]
    emb_st = np.zeros((n, st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension")
                       else st.get_sentence_embedding_dimension()), dtype=np.float32)
    emb_ir = np.zeros_like(emb_st)
    wall = {"st": 0.0, "irflow": 0.0}
    cpu = {"st": 0.0, "irflow": 0.0}
    ratios = []
    step = 0
    for r in range(args.rounds):
        for sl in slices:
            sub = [texts[i] for i in sl]
            times = {}
            for name in (("st", "irflow") if step % 2 == 0 else ("irflow", "st")):
                out, w, c = timed(lambda: run_st(sub) if name == "st" else run_irflow(sub))
                times[name] = w
                wall[name] += w
                cpu[name] += c
                if r == 0:
                    (emb_st if name == "st" else emb_ir)[sl] = out
            ratios.append(times["st"] / times["irflow"])
            step += 1
    total = n * args.rounds
    ps_st, ps_ir = total / wall["st"], total / wall["irflow"]
    ratio = ps_ir / ps_st
    log("")
    log(f"{'':24s}{'passages/s':>12s}{'wall s':>10s}{'cpu s':>10s}")
    log(f"{'sentence-transformers':24s}{ps_st:12.1f}{wall['st']:10.1f}{cpu['st']:10.1f}")
    log(f"{'irflow (' + prec + ')':24s}{ps_ir:12.1f}{wall['irflow']:10.1f}{cpu['irflow']:10.1f}")
    log(f"ratio irflow/ST: {ratio:.2f}x  (per-slice ratios: median {statistics.median(ratios):.2f}, "
        f"min {min(ratios):.2f}, max {max(ratios):.2f}, n={len(ratios)}; cpu-time ratio "
        f"{cpu['st'] / cpu['irflow']:.2f})")
    cos = (emb_st * emb_ir).sum(1) / (np.linalg.norm(emb_st, axis=1) * np.linalg.norm(emb_ir, axis=1))
    log(f"irflow {prec} vs ST embeddings: max abs diff {np.abs(emb_st - emb_ir).max():.2e}, "
        f"mean cosine {cos.mean():.6f}, min cosine {cos.min():.6f}")

    ok = ratio >= args.min_ratio
    log(f"speed check (ratio >= {args.min_ratio}): {'PASS' if ok else 'FAIL'}")

    if not args.no_quality:
        ok = quality(args, doc_ids, texts, emb_st, emb_ir, prec, enc, st, tok, max_length, max_tokens, max_batch) and ok
    load1 = cpu_load()
    log(f"load average: {load0:.1f} at start, {load1:.1f} at end (threads {args.threads})")
    return 0 if ok or not args.check else 1


def quality(args, doc_ids, texts, emb_st, emb_ir, prec, enc, st, tok, max_length, max_tokens, max_batch) -> bool:
    import ir_measures
    from ir_measures import nDCG

    from irflow.data.sources import iter_qrels
    from irflow.errors import IrflowError
    from irflow.models.biencoder import Encoder, EncoderSpec

    try:
        qids, qtexts = load(args.dataset, "queries")
        wanted = set(doc_ids)
        qrels = [ir_measures.Qrel(q, d, r) for q, d, r in iter_qrels(args.dataset) if d in wanted]
    except IrflowError as e:
        log(f"\nquality check skipped: {e}")
        return True
    judged = {q.query_id for q in qrels}
    keep = [i for i, q in enumerate(qids) if q in judged]
    qids, qtexts = [qids[i] for i in keep], [qtexts[i] for i in keep]
    if not qids:
        log("\nquality check skipped: no judged queries for these passages")
        return True

    log(f"\nretrieval quality: {len(qids)} queries, {len(qrels)} qrels, exact inner product over {len(doc_ids)} passages")
    fp32 = Encoder(EncoderSpec(args.model), device="cpu", autocast_dtype=None)
    seqs = tokenize_like_prepare(tok, texts, max_length)
    emb_fp32, w, _ = timed(lambda: fp32.encode_ids(seqs, max_tokens=max_tokens, max_batch=max_batch))
    log(f"(irflow fp32 encoding: {len(texts) / w:.1f} passages/s, encoding only)")
    d = np.abs(emb_fp32 - emb_st).max()
    log(f"irflow fp32 vs ST embeddings: max abs diff {d:.2e}")

    systems = {
        "irflow fp32": (emb_fp32.astype(np.float16), fp32.encode_texts(qtexts, tok, args.query_max_length)),
        f"irflow {prec}": (emb_ir.astype(np.float16), enc.encode_texts(qtexts, tok, args.query_max_length)),
        "sentence-transformers fp32": (emb_st, st.encode(qtexts)),
    }
    res = {}
    for name, (dv, qv) in systems.items():
        run = exact_run(doc_ids, dv, qids, qv)
        res[name] = ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]
        log(f"  nDCG@10 {name:28s} {res[name]:.4f}")
    diff = res[f"irflow {prec}"] - res["irflow fp32"]
    ok = abs(diff) <= args.tolerance
    log(f"nDCG@10 irflow {prec} - fp32: {diff:+.4f}; vs ST fp32: {res[f'irflow {prec}'] - res['sentence-transformers fp32']:+.4f}")
    log(f"quality check (|{prec} - fp32| <= {args.tolerance}): {'PASS' if ok else 'FAIL'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
