"""``irflow cluster``: topic clusters of the training queries, for topic-aware batch sampling (TAS).

TAS draws each training batch from one cluster of semantically close queries. The clusters come
from a baseline dense encoder: every training query is encoded (exactly as ``irflow encode`` and
``irflow search`` encode text), faiss k-means groups the vectors, and each query goes to its top-1
centroid. With ``spherical`` (the default, for inner-product models) the centroids are
L2-normalised after every iteration and the assignment is by inner product, which is what faiss
does when it trains the coarse quantizer of an inner-product IVF index -- the reference setup
(k = 2000, 10 iterations, seed 1234, at most 256 training points per centroid).

Only queries whose ``part`` is ``train`` in the ``preprocess`` artifact are clustered: validation
queries and the held-out test queries (which preprocess already dropped) must not shape the
training batches. The output is ``clusters.parquet`` (qid, cluster); clusters may be empty and
their sizes are unconstrained, as in the reference, and the manifest reports the size distribution.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from .errors import IrflowError
from .progress import progress as progress_bar
from .params import Input, WithPrecision, KeyContext

log = logging.getLogger("irflow")

CLUSTERS = "clusters.parquet"
#: faiss's default: k-means trains on a seeded sample of at most 256 points per centroid.
MAX_POINTS_PER_CENTROID = 256
#: Below this many points per centroid faiss considers the training set too small.
MIN_POINTS_PER_CENTROID = 39


class ClusterParams(WithPrecision):
    """``irflow cluster``: the training queries of a preprocess artifact, k-means over a dense encoder.

    bf16 vectors can put a borderline query into another cluster: precision is part of the key.
    """

    step: ClassVar[str] = "cluster"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("examples", "--examples", "preprocess", "Preprocess artifact; only its training queries "
              "(part == train) are clustered."),
        Input("queries", "--queries", "prepare", "Prepare artifact of the queries (texts; its token ids are used "
              "if made by the model's tokenizer at --max-length).", kind="queries"),
    )

    model: str = Field(description="Encoder: HF id, local directory, train artifact (a trained stage, as TAS-B "
                       "clusters with its BERT_DOT), or all-MiniLM-L6-v2.", json_schema_extra={"ref": True})
    pooling: Literal["mean", "cls"] = Field("mean", description="Mean of the token states or the CLS state.")
    normalize: bool = Field(True, description="L2-normalise query vectors.")
    max_length: int = Field(30, ge=2, description="Query tokens.")
    k: int = Field(2000, ge=1, description="Clusters (lowered, with a warning, to the number of training queries).")
    niter: int = Field(10, ge=1, description="k-means iterations.")
    seed: int = Field(1234, description="faiss k-means seed.")
    spherical: bool = Field(True, description="Normalised centroids and inner-product assignment (for "
                            "inner-product models), or L2.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        """Everything that changes ``clusters.parquet``; the device and the token source do not."""
        return {**super().key_params(ctx), "max_points_per_centroid": MAX_POINTS_PER_CENTROID}


# ------------------------------------------------------------------------------------------ k-means


def kmeans_assign(vectors: np.ndarray, k: int, *, niter: int = 10, seed: int = 1234,
                  spherical: bool = True) -> tuple[np.ndarray, int, np.ndarray]:
    """Cluster ``vectors`` (float32, [n, d]) with faiss k-means; return (assignment, k used, centroids).

    ``assignment`` (int64, [n]) is each vector's top-1 centroid: by inner product when
    ``spherical`` (normalised centroids, for inner-product models), else by L2 distance. With fewer
    vectors than ``k`` every vector becomes its own centroid, so ``k`` is clamped to ``n`` with a
    warning rather than failing a small collection. faiss's own stderr warning about few points per
    centroid is replaced by a log warning, and its random choices all follow ``seed``, so the
    result is the same for the same inputs and seed.
    """
    from .index.faisslib import load

    faiss = load()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise IrflowError(f"expected a 2-d array of vectors, got shape {x.shape}")
    n, d = x.shape
    if n == 0:
        raise IrflowError("no vectors to cluster")
    if k < 1:
        raise IrflowError(f"k must be at least 1, got {k}")
    if niter < 1:
        raise IrflowError(f"niter must be at least 1, got {niter}")
    k_used = min(k, n)
    if k_used < k:
        log.warning("only %d queries to cluster: k lowered from the requested %d to %d", n, k, k_used)
    elif n < MIN_POINTS_PER_CENTROID * k_used:
        log.warning("clustering %d queries into %d clusters: faiss advises at least %d points (%d per cluster); "
                    "the clusters may be poor", n, k_used, MIN_POINTS_PER_CENTROID * k_used, MIN_POINTS_PER_CENTROID)
    km = faiss.Kmeans(d, k_used, niter=niter, seed=seed, spherical=spherical, verbose=False,
                      max_points_per_centroid=MAX_POINTS_PER_CENTROID,
                      min_points_per_centroid=1)  # 1: only silences faiss's fprintf; warned above instead
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    index = faiss.IndexFlatIP(d) if spherical else faiss.IndexFlatL2(d)
    index.add(centroids)
    _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64), k_used, centroids


def cluster_sizes_stats(assignment: np.ndarray, k: int) -> dict:
    """Size distribution over all ``k`` clusters (empty ones included), for the manifest.

    TAS samples batches per cluster, so empty and giant clusters are worth seeing at a glance.
    """
    sizes = np.bincount(np.asarray(assignment, dtype=np.int64), minlength=k)[:k] if k > 0 else np.zeros(0, int)
    non_empty = int((sizes > 0).sum())
    return {
        "k": int(k),
        "non_empty": non_empty,
        "empty": int(k - non_empty),
        "min_size": int(sizes.min()) if k else 0,
        "max_size": int(sizes.max()) if k else 0,
        "mean_size": float(sizes.mean()) if k else 0.0,
        "median_size": float(np.median(sizes)) if k else 0.0,
    }


# --------------------------------------------------------------------------------------------- step


def train_query_ids(examples_dir: Path) -> list[str]:
    """The ``train`` part's query ids of a preprocess artifact, in its (sorted) order."""
    import pyarrow.parquet as pq

    from .preprocess import EXAMPLES

    path = Path(examples_dir) / EXAMPLES
    if not path.is_file():
        raise IrflowError(f"not a preprocess artifact (no {EXAMPLES})", where=examples_dir)
    t = pq.read_table(path, columns=["part", "qid"]).to_pydict()
    qids = [q for part, q in zip(t["part"], t["qid"]) if part == "train"]
    if not qids:
        raise IrflowError("the examples have no training queries (part == 'train') to cluster", where=examples_dir)
    return qids


class _Rows:
    """Rows ``rows`` of a sequence, by position, without copying them."""

    def __init__(self, base, rows: np.ndarray):
        self.base, self.rows = base, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.base[int(self.rows[i])]


def _query_tokens(p: ClusterParams, queries_dir: Path, rows: np.ndarray) -> tuple[object, np.ndarray, str]:
    """Token ids of the selected query rows: (sequences, lengths, where they came from).

    The prepared ``tokens.arrow`` is used when ``tokens.json`` says it was made by this model's
    tokenizer (same digest) at this very ``max_length`` (then the ids are identical to tokenising
    now); otherwise the texts are tokenised as ``irflow search`` tokenises queries. Either way the
    vectors are the same, so the source is not part of the key.
    """
    from .data import arrow
    from .encode import _RowViews
    from .models.resolve import TOKENS_RECORD, load_tokenizer, read_tokens_record, tokenizer_digest
    from .prepare import load_texts

    from .rerank import model_path

    tokenizer = load_tokenizer(model_path(p.model))
    tokens_path = Path(queries_dir) / arrow.TOKENS
    rec = read_tokens_record(queries_dir) if (Path(queries_dir) / TOKENS_RECORD).is_file() else {}
    if (tokens_path.is_file() and rec.get("sha256") == tokenizer_digest(tokenizer)
            and rec.get("max_length") == p.max_length):
        tok = arrow.open_table(tokens_path).column("input_ids").combine_chunks()
        offsets = tok.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        views = _RowViews(tok.values.to_numpy(zero_copy_only=False), offsets)
        return _Rows(views, rows), np.diff(offsets)[rows], "prepared"
    _, texts = load_texts(queries_dir)
    ids = tokenizer([texts[i] for i in rows], add_special_tokens=True, truncation=True,
                    max_length=p.max_length)["input_ids"]
    return ids, np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids)), "tokenizer"


def cluster_queries(p: ClusterParams, examples_dir: Path, queries_dir: Path, out: Path, *, device: str = "cpu",
                    autocast_dtype=None, progress: bool = True) -> dict:
    """Encode the training queries, k-means them, write ``out/clusters.parquet``; return manifest stats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .models.biencoder import Encoder, EncoderSpec
    from .prepare import load_ids
    from .rerank import model_path

    qids = train_query_ids(examples_dir)
    row_of = {q: i for i, q in enumerate(load_ids(queries_dir))}
    missing = [q for q in qids if q not in row_of]
    if missing:
        raise IrflowError(f"{len(missing)} of the {len(qids)} training queries are not in the queries artifact "
                          f"(e.g. {missing[0]!r}); give the queries artifact the examples were made from",
                          where=queries_dir)
    rows = np.fromiter((row_of[q] for q in qids), dtype=np.int64, count=len(qids))
    seqs, lengths, source = _query_tokens(p, queries_dir, rows)

    enc = Encoder(EncoderSpec(model_path(p.model), p.pooling, p.normalize), device=device, autocast_dtype=autocast_dtype)
    bar = progress_bar(len(rows), "cluster: encoding training queries", "query", disable=not progress)
    vectors = enc.encode_ids(seqs, progress=bar.update, lengths=lengths)
    bar.close()

    warnings = []
    if p.k > len(qids):
        warnings.append(f"only {len(qids)} training queries: k lowered from {p.k} to {len(qids)}")
    elif len(qids) < MIN_POINTS_PER_CENTROID * p.k:
        warnings.append(f"{len(qids)} training queries for {p.k} clusters: faiss advises at least "
                        f"{MIN_POINTS_PER_CENTROID} per cluster")
    assignment, k_used, _ = kmeans_assign(vectors, p.k, niter=p.niter, seed=p.seed, spherical=p.spherical)
    pq.write_table(pa.table({"qid": pa.array(qids, pa.string()), "cluster": pa.array(assignment, pa.int32())}),
                   out / CLUSTERS)
    return {"queries": len(qids), "dim": int(vectors.shape[1]), "k_requested": p.k, "tokens_from": source,
            "weights": str(enc.weight_dtype or "torch.float32").removeprefix("torch."),
            "clusters": cluster_sizes_stats(assignment, k_used), "warnings": warnings}
