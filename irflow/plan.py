"""From a validated config to the DAG of store artifacts, with the same keys the commands compute.

The Snakefile asks the plan for every path it declares and for every command line it runs; the
command recomputes the key from its own arguments and refuses to write anywhere else (``--out``).
Building the plan imports nothing heavy (no torch, no faiss), so Snakemake parses in a moment.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .config import (BM25System, Config, DenseStage, DenseSystem, DenseTraining, Experiment, FusionSystem,
                     RerankSystem, Stage)
from .store import artifact_path, compute_key



@dataclass(eq=False)
class Node:
    step: str
    params: dict
    args: list[str]
    inputs: dict[str, Node] = field(default_factory=dict)
    # how each input is passed on the command line: input name -> (option, value prefix)
    input_opts: dict[str, tuple[str, str]] = field(default_factory=dict)
    gpu: bool = False

    def __post_init__(self):
        self.key = compute_key(self.step, self.params, {n: i.key for n, i in self.inputs.items()})


@dataclass
class Plan:
    store: str
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    experiments: dict[str, Node] = field(default_factory=dict)  # experiment -> its evaluate node
    systems: dict[str, dict[str, Node]] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        return self.nodes.setdefault((node.step, node.key), node)

    def node(self, step: str, key: str) -> Node:
        return self.nodes[(step, key)]

    def path(self, node: Node) -> str:
        return str(artifact_path(self.store, node.step, node.key))

    def manifest(self, node: Node) -> str:
        return self.path(node) + "/manifest.json"

    def input_manifests(self, step: str, key: str) -> dict[str, str]:
        return {name: self.manifest(i) for name, i in self.node(step, key).inputs.items()}

    def command(self, step: str, key: str) -> str:
        """The argument string of ``irflow <step>`` for this node (store and --out included)."""
        n = self.node(step, key)
        args = list(n.args)
        for name, inp in n.inputs.items():
            opt, prefix = n.input_opts[name]
            args += [opt, prefix + self.path(inp)]
        args += ["--store", self.store, "--out", self.path(n)]
        return shlex.join(args)


# ------------------------------------------------------------------------------------------- steps


def _prepare(plan: Plan, dataset: str, kind: str, tokenizer: str | None = None, max_length: int | None = None,
             split: tuple | None = None) -> Node:
    from .prepare import PrepareParams

    p = PrepareParams(dataset, kind, tokenizer, max_length, split)
    args = ["--dataset", dataset, "--kind", kind]
    if tokenizer:
        args += ["--tokenizer", tokenizer, "--max-length", str(max_length)]
    if split:
        args += ["--split", split[0], "--split-seed", str(split[1]), "--test-size", str(split[2]),
                 "--valid-size", str(split[3])]
    return plan.add(Node("prepare", p.key_params(), args))


def _search(plan: Plan, index: Node, queries: Node, kind: str, k: int, qml: int = 64, precision: str = "auto",
            nprobe: int | None = None) -> Node:
    from .search import SearchParams

    p = SearchParams(k, qml, precision, nprobe)
    args = ["--k", str(k)]
    if kind != "bm25":
        args += ["--query-max-length", str(qml), "--precision", precision]
        if nprobe is not None:
            args += ["--nprobe", str(nprobe)]
    return plan.add(Node("search", p.key_params(kind), args, {"index": index, "queries": queries},
                         {"index": ("--index", ""), "queries": ("--queries", "")}, gpu=kind != "bm25"))


def _bm25(plan: Plan, exp: Experiment, s: BM25System, queries: Node) -> Node:
    from .index.bm25 import BM25Params

    texts = _prepare(plan, exp.corpus, "docs")
    p = BM25Params(s.k1, s.b, s.method, s.stemmer, s.stopwords)
    args = ["--k1", repr(s.k1), "--b", repr(s.b), "--method", s.method,
            "--stemmer", s.stemmer or "none", "--stopwords", s.stopwords or "none"]
    index = plan.add(Node("index", p.key_params(), args, {"texts": texts}, {"texts": ("--bm25", "")}))
    return _search(plan, index, queries, "bm25", s.k)


def _dense(plan: Plan, exp: Experiment, s: DenseSystem, queries: Node, model: Node | None = None) -> Node:
    """Encode, index and search; ``model`` is the final train node of a trained system."""
    from .encode import EncodeParams
    from .index.dense import FaissParams

    tokens = _prepare(plan, exp.corpus, "docs", s.model, s.doc_max_length)  # training keeps the tokenizer
    normalize = s.similarity == "cos"
    shards = {}
    inputs, opts = {"prepared": tokens}, {"prepared": ("--prepared", "")}
    if model is not None:
        inputs["model"], opts["model"] = model, ("--model", "")
    for i in range(s.shards):
        p = EncodeParams(s.model, s.pooling, normalize, s.precision, i, s.shards, model_input=model is not None)
        args = ([] if model is not None else ["--model", s.model]) + [
            "--pooling", s.pooling, "--normalize" if normalize else "--no-normalize",
            "--precision", s.precision, "--shard", str(i), "--num-shards", str(s.shards)]
        shards[f"shard{i}"] = plan.add(Node("encode", p.key_params(), args, inputs, opts, gpu=True))
    fp = FaissParams(s.index, s.train_size, 0)
    args = ["--factory", s.index, "--train-size", str(s.train_size), "--seed", "0"]
    index = plan.add(Node("index", fp.key_params(), args, shards, {n: ("--shard", "") for n in shards}))
    return _search(plan, index, queries, "faiss", s.k, s.query_max_length, s.precision, s.nprobe)


def _fusion(plan: Plan, s: FusionSystem, runs: dict[str, Node]) -> Node:
    from .fuse import fuse_params

    params = fuse_params(s.method, s.rrf_k, s.norm, s.k)
    args = ["--method", s.method, "--rrf-k", str(s.rrf_k), "--norm", s.norm, "--k", str(s.k)]
    inputs = {f"run{i}": runs[name] for i, name in enumerate(s.runs)}
    return plan.add(Node("fuse", params, args, inputs, {n: ("--run", "") for n in inputs}))


def _optim(st, precision: str, head_lr: float | None = None):
    """The loop's settings of a stage (checkpoints every 100 steps: not part of any key)."""
    from .train.loop import OptimConfig

    return OptimConfig(st.lr, head_lr, st.weight_decay, st.warmup_steps, st.max_steps, st.grad_accum,
                       st.clip_norm or None, precision, st.seed, 100, st.validate_every, st.patience)


def _optim_args(st, precision: str) -> list[str]:
    return ["--lr", repr(st.lr), "--weight-decay", repr(st.weight_decay), "--warmup-steps", str(st.warmup_steps),
            "--max-steps", str(st.max_steps), "--grad-accum", str(st.grad_accum), "--clip-norm", repr(st.clip_norm),
            "--seed", str(st.seed), "--validate-every", str(st.validate_every), "--patience", str(st.patience),
            "--precision", precision]


def _train_stage(plan: Plan, s: RerankSystem, st: Stage, prev: Node | None, examples: Node, queries: Node,
                 docs: Node) -> Node:
    from .train.crossencoder import GroupConfig
    from .train.step import TrainParams

    inputs = {"examples": examples, "queries": queries, "docs": docs}
    opts = {"examples": ("--examples", ""), "queries": ("--queries", ""), "docs": ("--docs", "")}
    if prev is not None:
        inputs["init"], opts["init"] = prev, ("--init", "")
    if st.teacher is not None:
        inputs["teacher"], opts["teacher"] = _teacher(plan, s, st, prev, examples, queries, docs), ("--teacher", "")
    p = TrainParams(None if prev else s.model, s.head, s.max_length,
                    GroupConfig(st.objective, st.batch_queries, st.group_size, st.negatives_depth, st.temperature),
                    _optim(st, s.precision, st.head_lr), 30, None if prev else s.separate_layers)
    args = ([] if prev else ["--model", s.model]) + (["--head", s.head] if s.head else []) + [
        "--objective", st.objective, "--batch-queries", str(st.batch_queries), "--group-size", str(st.group_size),
        "--negatives-depth", str(st.negatives_depth), "--temperature", repr(st.temperature),
        "--max-length", str(s.max_length), *_optim_args(st, s.precision)]
    if st.head_lr is not None:
        args += ["--head-lr", repr(st.head_lr)]
    if s.separate_layers is not None and prev is None:
        args += ["--separate-layers", str(s.separate_layers)]
    return plan.add(Node("train", p.key_params(), args, inputs, opts, gpu=True))


def _scorer(plan: Plan, step: str, models: list, s: RerankSystem | None, depth: int, inputs: dict[str, Node],
            max_length: int | None = None, precision: str | None = None) -> Node:
    """A score/rerank node: models that are train nodes become inputs, as the CLI keys them."""
    from .rerank import scorer_params

    max_length = max_length or s.max_length
    precision = precision or s.precision
    params, model_inputs = scorer_params(models, lambda m: isinstance(m, Node), depth=depth,
                                         max_length=max_length, precision=precision)
    args = [a for m in models if not isinstance(m, Node) for a in ("--model", m)]
    args += ["--depth", str(depth), "--max-length", str(max_length), "--precision", precision]
    opts = {n: ("--model", "") for n in model_inputs}
    opts.update({n: (f"--{n}", "") for n in inputs})
    return plan.add(Node(step, params, args, {**model_inputs, **inputs}, opts, gpu=True))


def _teacher(plan: Plan, s: RerankSystem, st: Stage, prev: Node | None, examples: Node, queries: Node,
             docs: Node) -> Node:
    models = [prev] if st.teacher == "previous" else list(st.teacher)
    return _scorer(plan, "score", models, s, st.negatives_depth,
                   {"examples": examples, "queries": queries, "docs": docs})


def _examples(plan: Plan, exp: Experiment, first_stage: Node, depth: int, min_grade: int, all_queries: Node,
              qrels: str | None = None, split: tuple | None = None) -> Node:
    """Training examples of the experiment's training split (shared by every system that trains),
    or of a separate training set (``qrels``, ``split`` = (seed, test, valid))."""
    from .preprocess import PreprocessParams

    qrels = qrels or exp.qrels or exp.queries
    seed, test, valid = split or (exp.split.seed, exp.split.test, exp.split.valid)
    pp = PreprocessParams(qrels, depth, min_grade, seed, test, valid)
    args = ["--qrels", qrels, "--depth", str(depth), "--min-grade", str(min_grade),
            "--split-seed", str(seed), "--test-size", str(test), "--valid-size", str(valid)]
    return plan.add(Node("preprocess", pp.key_params(), args, {"queries": all_queries, "run": first_stage},
                         {"queries": ("--queries", ""), "run": ("--run", "")}))


def _reranker(plan: Plan, exp: Experiment, s: RerankSystem, runs: dict[str, Node], all_queries: Node) -> Node | str:
    """The re-ranker's model: its hub id/directory, or the last of its fine-tuning stages."""
    if not s.stages:
        return s.model
    docs = _prepare(plan, exp.corpus, "docs")
    examples = _examples(plan, exp, runs[s.training.first_stage], s.training.depth, s.training.min_grade,
                         all_queries)
    prev = None
    for st in s.stages:
        prev = _train_stage(plan, s, st, prev, examples, all_queries, docs)
    return prev


def _rerank(plan: Plan, exp: Experiment, s: RerankSystem, model: Node | str, runs: dict[str, Node],
            eval_queries: Node) -> Node:
    docs = _prepare(plan, exp.corpus, "docs")
    return _scorer(plan, "rerank", [model], s, s.depth,
                   {"run": runs[s.first_stage], "queries": eval_queries, "docs": docs})


# ------------------------------------------------------------------------------- dense training


def _dense_train_node(plan: Plan, family: str, model: str | None, s: DenseSystem, t: DenseTraining, st: DenseStage,
                      inputs: dict[str, Node], colbert: Node | str | None) -> Node:
    """One ``irflow train --family bi-encoder|colbert`` node; keys as the CLI computes them."""
    from .train.biencoder import DenseConfig
    from .train.step import DenseTrainParams

    needs_colbert = st.objective in ("inbatch", "dual")
    inputs = {n: v for n, v in inputs.items() if v is not None}
    if not needs_colbert or not isinstance(colbert, Node):
        inputs.pop("colbert", None)
    if st.sampler == "random":
        inputs.pop("clusters", None)
    if st.objective == "infonce" and st.sampler != "tas-balanced":
        inputs.pop("teacher", None)
    normalize = s.similarity == "cos"
    cfg = DenseConfig(st.objective, st.sampler, st.batch_size, st.clusters_per_batch, st.bins, st.alpha,
                      st.pair_weight, st.inbatch_form, st.temperature, st.negatives_depth, t.query_max_length,
                      t.passage_max_length)
    colbert_key = ({"input": "colbert"} if isinstance(colbert, Node) else colbert) if needs_colbert else None
    p = DenseTrainParams(family, model, s.pooling, normalize, t.scale, colbert_key, cfg, _optim(st, s.precision),
                         t.validation_depth)
    args = ["--family", family] + (["--model", model] if model else []) + [
        "--objective", st.objective, "--sampler", st.sampler, "--batch-size", str(st.batch_size),
        "--clusters-per-batch", str(st.clusters_per_batch), "--bins", str(st.bins), "--alpha", repr(st.alpha),
        "--pair-weight", repr(st.pair_weight), "--inbatch-form", st.inbatch_form,
        "--temperature", repr(st.temperature), "--negatives-depth", str(st.negatives_depth),
        "--query-max-length", str(t.query_max_length), "--passage-max-length", str(t.passage_max_length),
        "--pooling", s.pooling, "--normalize" if normalize else "--no-normalize",
        "--validation-depth", str(t.validation_depth), *_optim_args(st, s.precision)]
    if t.scale is not None:
        args += ["--scale", repr(t.scale)]
    if needs_colbert and not isinstance(colbert, Node):
        args += ["--colbert", colbert]
    opts = {n: (f"--{n}", "") for n in inputs}
    return plan.add(Node("train", p.key_params(), args, inputs, opts, gpu=True))


def _dense_trained(plan: Plan, exp: Experiment, s: DenseSystem, runs: dict[str, Node], rerankers: dict,
                   all_queries: Node) -> Node:
    """preprocess -> cluster -> score teacher margins -> (ColBERT teacher) -> stage 1 -> stage 2 ..."""
    from .cluster import ClusterParams

    t = s.training
    docs = _prepare(plan, exp.corpus, "docs")
    if t.queries:  # a separate training set: its own queries, searched with the first stage's index
        all_queries = _prepare(plan, t.queries, "queries")
        first = runs[t.first_stage].inputs["index"]
        b = exp.systems[t.first_stage]
        run = _search(plan, first, all_queries, "bm25" if isinstance(b, BM25System) else "faiss", t.depth)
        examples = _examples(plan, exp, run, t.depth, t.min_grade, all_queries, t.qrels or t.queries,
                             (exp.split.seed if exp.split else 42, 0.0, t.valid))
    else:
        examples = _examples(plan, exp, runs[t.first_stage], t.depth, t.min_grade, all_queries)
    base = {"examples": examples, "queries": all_queries, "docs": docs}
    depth = max(st.negatives_depth for st in [*t.stages, *([t.colbert.stage] if t.colbert and t.colbert.stage else [])])
    if isinstance(t.teacher, str):
        r = exp.systems[t.teacher]
        teacher = _scorer(plan, "score", [rerankers[t.teacher]], r, depth, base)
    else:
        teacher = _scorer(plan, "score", list(t.teacher), None, depth, base, t.teacher_max_length, s.precision)
    clusters = None
    if any(st.sampler != "random" for st in t.stages):
        c = t.clusters
        normalize = s.similarity == "cos"
        cp = ClusterParams(c.model or s.model, s.pooling, normalize, t.query_max_length, c.k, c.niter, c.seed, True,
                           s.precision)
        args = ["--model", c.model or s.model, "--pooling", s.pooling, "--normalize" if normalize else "--no-normalize",
                "--max-length", str(t.query_max_length), "--k", str(c.k), "--niter", str(c.niter),
                "--seed", str(c.seed), "--precision", s.precision]
        clusters = plan.add(Node("cluster", cp.key_params(), args, {"examples": examples, "queries": all_queries},
                                 {"examples": ("--examples", ""), "queries": ("--queries", "")}, gpu=True))
    colbert: Node | str | None = None
    if t.colbert is not None:
        colbert = t.colbert.model
        if t.colbert.stage is not None:
            colbert = _dense_train_node(plan, "colbert", t.colbert.model, s, t, t.colbert.stage,
                                        {**base, "teacher": teacher, "clusters": clusters}, None)
    prev = None
    for st in t.stages:
        prev = _dense_train_node(plan, "bi-encoder", None if prev else s.model, s, t, st,
                                 {**base, "init": prev, "teacher": teacher, "clusters": clusters,
                                  "colbert": colbert if isinstance(colbert, Node) else None}, colbert)
    return prev


def build(config: Config, store: str = "results/store") -> Plan:
    from .evaluate import evaluate_params

    plan = Plan(store)
    for name, exp in config.experiments.items():
        queries = _prepare(plan, exp.queries, "queries")
        eval_queries = queries
        if exp.split is not None:
            eval_queries = _prepare(plan, exp.queries, "queries",
                                    split=("test", exp.split.seed, exp.split.test, exp.split.valid))
        runs: dict[str, Node] = {}
        for sname, s in exp.systems.items():
            if isinstance(s, BM25System):
                runs[sname] = _bm25(plan, exp, s, queries)
            elif isinstance(s, DenseSystem) and s.training is None:
                runs[sname] = _dense(plan, exp, s, queries)
        # re-rankers train on untrained first stages; trained retrievers may distil from them
        rerankers = {n: _reranker(plan, exp, s, runs, queries) for n, s in exp.systems.items()
                     if isinstance(s, RerankSystem)}
        for sname, s in exp.systems.items():
            if isinstance(s, DenseSystem) and s.training is not None:
                runs[sname] = _dense(plan, exp, s, queries, _dense_trained(plan, exp, s, runs, rerankers, queries))
        for sname, s in exp.systems.items():
            if isinstance(s, RerankSystem):
                runs[sname] = _rerank(plan, exp, s, rerankers[sname], runs, eval_queries)
        for sname, s in exp.systems.items():
            if isinstance(s, FusionSystem):
                runs[sname] = _fusion(plan, s, runs)
        runs = {n: runs[n] for n in exp.systems}  # config order
        qrels = exp.qrels or exp.queries
        baseline = exp.baseline or next(iter(exp.systems))
        params = evaluate_params(list(runs), qrels, exp.measures, baseline)
        args = ["--qrels", qrels, "--baseline", baseline]
        for m in exp.measures:
            args += ["--measure", m]
        inputs = {"queries": eval_queries, **{f"run:{n}": r for n, r in runs.items()}}
        opts = {"queries": ("--queries", ""), **{f"run:{n}": ("--run", f"{n}=") for n in runs}}
        plan.experiments[name] = plan.add(Node("evaluate", params, args, inputs, opts))
        plan.systems[name] = runs
    return plan
