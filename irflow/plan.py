"""From a validated config to the DAG of store artifacts, with the same keys the commands compute.

Each node holds a step's parameter object (:mod:`irflow.params`) and its input nodes; its key is
computed by :func:`irflow.params.keyed`, the function each command calls on its own options, and
its command line is rendered from the same object. The Snakefile asks the plan for every path it
declares and every command line it runs; the command recomputes the key and refuses to write
anywhere else (``--out``). Building the plan imports nothing heavy (no torch, no faiss), so
Snakemake parses in a moment.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .cluster import ClusterParams
from .config import (BM25System, Config, DenseStage, DenseSystem, DenseTraining, Experiment, FusionSystem,
                     RerankSystem, Stage)
from .encode import EncodeParams
from .evaluate import EvaluateParams
from .fuse import FuseParams
from .index.bm25 import BM25Params
from .index.dense import FaissParams
from .params import Described, StepParams, input_spec, keyed
from .prepare import PrepareParams
from .preprocess import PreprocessParams
from .rerank import RerankParams
from .score import ScoreParams
from .search import SearchParams
from .store import artifact_path, compute_key
from .train.params import BiEncoderTrainParams, ColbertTrainParams, CrossEncoderTrainParams

#: the subcommand of steps whose command is a group (``irflow index bm25``, ``irflow train bi-encoder``)
_SUBCOMMAND = {BM25Params: "bm25", FaissParams: "faiss", CrossEncoderTrainParams: "cross-encoder",
               BiEncoderTrainParams: "bi-encoder", ColbertTrainParams: "colbert"}


@dataclass(eq=False)
class Node:
    params: StepParams
    inputs: dict[str, Node] = field(default_factory=dict)
    gpu: bool = False
    key: str = ""
    key_params: dict = field(default_factory=dict)

    @property
    def step(self) -> str:
        return self.params.step


@dataclass
class Plan:
    store: str
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    experiments: dict[str, Node] = field(default_factory=dict)  # experiment -> its evaluate node
    systems: dict[str, dict[str, Node]] = field(default_factory=dict)
    by_path: dict[str, Node] = field(default_factory=dict)

    def add(self, params: StepParams, inputs: dict[str, Node] | None = None, gpu: bool = False) -> Node:
        """The node of ``params`` on ``inputs``, keyed as the command keys its own options."""
        n = Node(params, dict(inputs or {}), gpu)
        n.key_params, paths, input_keys = keyed(params, {k: self.path(v) for k, v in n.inputs.items()},
                                                self.describe)
        for name in paths.keys() - n.inputs.keys():  # model options that name a node of the plan
            n.inputs[name] = self.by_path[paths[name]]
        n.key = compute_key(n.step, n.key_params, input_keys)
        node = self.nodes.setdefault((n.step, n.key), n)
        self.by_path.setdefault(self.path(node), node)
        return node

    def describe(self, path: str) -> Described | None:
        n = self.by_path.get(str(path))
        return None if n is None else Described(n.key, n.step, n.key_params)

    def node(self, step: str, key: str) -> Node:
        return self.nodes[(step, key)]

    def path(self, node: Node) -> str:
        return str(artifact_path(self.store, node.step, node.key))

    def manifest(self, node: Node) -> str:
        return self.path(node) + "/manifest.json"

    def input_manifests(self, step: str, key: str) -> dict[str, str]:
        return {name: self.manifest(i) for name, i in self.node(step, key).inputs.items()}

    def argv(self, node: Node) -> list[str]:
        """The arguments of ``irflow <step>`` for this node (store and --out included)."""
        args = [_SUBCOMMAND[type(node.params)]] if type(node.params) in _SUBCOMMAND else []
        args += node.params.args()
        for name, inp in node.inputs.items():
            if name.startswith("model") and name[5:].isdigit():
                continue  # a model option: its value is already this input's path
            spec = input_spec(type(node.params), name)
            value = self.path(inp)
            args += [spec.option, f"{name.split(':', 1)[1]}={value}" if spec.named else value]
        return args + ["--store", self.store, "--out", self.path(node)]

    def command(self, step: str, key: str) -> str:
        return shlex.join(self.argv(self.node(step, key)))


# ------------------------------------------------------------------------------------------- steps


def _prepare(plan: Plan, dataset: str, kind: str, tokenizer: str | None = None, max_length: int | None = None,
             split=None) -> Node:
    extra = {"max_length": max_length} if max_length else {}
    if split is not None:
        extra.update(split="test", split_seed=split.seed, test_size=split.test, valid_size=split.valid)
    return plan.add(PrepareParams(dataset=dataset, kind=kind, tokenizer=tokenizer, **extra))


def _search(plan: Plan, index: Node, queries: Node, k: int, precision: str, qml: int | None = None,
            nprobe: int | None = None, gpu: bool = True) -> Node:
    extra = {"query_max_length": qml} if qml else {}
    indexes = index if isinstance(index, list) else [index]
    return plan.add(SearchParams(k=k, precision=precision, nprobe=nprobe, **extra),
                    {**{f"index{i}": x for i, x in enumerate(indexes)}, "queries": queries}, gpu=gpu)


def _bm25(plan: Plan, exp: Experiment, s: BM25System, queries: Node, precision: str) -> Node:
    texts = _prepare(plan, exp.corpus, "docs")
    p = BM25Params(k1=s.k1, b=s.b, method=s.method, stemmer=s.stemmer, stopwords=s.stopwords)
    return _search(plan, plan.add(p, {"texts": texts}), queries, s.k, precision, gpu=False)


def _dense(plan: Plan, exp: Experiment, s: DenseSystem, queries: Node, precision: str,
           model: Node | None = None) -> Node:
    """Encode, index and search; ``model`` is the final train node of a trained system."""
    tokens = _prepare(plan, exp.corpus, "docs", s.model, s.doc_max_length)  # training keeps the tokenizer
    shards = {}
    for i in range(s.shards):
        p = EncodeParams(model=plan.path(model) if model is not None else s.model, pooling=s.pooling,
                         normalize=s.similarity == "cos", precision=precision, shard=i, num_shards=s.shards)
        shards[f"shard{i}"] = plan.add(p, {"prepared": tokens}, gpu=True)
    faiss = FaissParams(factory=s.index, train_size=s.train_size)
    if s.index_per_shard:  # search merges the shards' top k: no process holds the whole index
        index = [plan.add(faiss, {"shard0": shard}) for shard in shards.values()]
    else:
        index = plan.add(faiss, shards)
    return _search(plan, index, queries, s.k, precision, s.query_max_length, s.nprobe)


def _fusion(plan: Plan, s: FusionSystem, runs: dict[str, Node]) -> Node:
    p = FuseParams(method=s.method, rrf_k=s.rrf_k, norm=s.norm, k=s.k)
    return plan.add(p, {f"run{i}": runs[name] for i, name in enumerate(s.runs)})


def _model(plan: Plan, m: Node | str) -> str:
    return plan.path(m) if isinstance(m, Node) else m


def _train_stage(plan: Plan, s: RerankSystem, st: Stage, prev: Node | None, examples: Node, queries: Node,
                 docs: Node, precision: str) -> Node:
    inputs = {"examples": examples, "queries": queries, "docs": docs}
    if prev is not None:
        inputs["init"] = prev
    if st.teacher is not None:
        models = [prev] if st.teacher == "previous" else list(st.teacher)
        inputs["teacher"] = _score(plan, models, st.negatives_depth, s.max_length, precision,
                                   {"examples": examples, "queries": queries, "docs": docs})
    p = CrossEncoderTrainParams(model=None if prev else s.model, head=s.head, max_length=s.max_length,
                                separate_layers=None if prev else s.separate_layers,
                                document_cls=None if prev else s.document_cls, precision=precision,
                                **st.model_dump(exclude={"teacher"}))
    return plan.add(p, inputs, gpu=True)


def _score(plan: Plan, models: list, depth: int, max_length: int, precision: str, inputs: dict[str, Node]) -> Node:
    p = ScoreParams(model=[_model(plan, m) for m in models], depth=depth, max_length=max_length,
                    precision=precision)
    return plan.add(p, inputs, gpu=True)


def _examples(plan: Plan, exp: Experiment, first_stage: Node, depth: int, min_grade: int, negatives: str,
              all_queries: Node, qrels: str | None = None, split: tuple | None = None) -> Node:
    """Training examples of the experiment's training split (shared by every system that trains),
    or of a separate training set (``qrels``, ``split`` = (seed, test, valid))."""
    seed, test, valid = split or (exp.split.seed, exp.split.test, exp.split.valid)
    p = PreprocessParams(qrels=qrels or exp.qrels or exp.queries, depth=depth, min_grade=min_grade,
                         negatives=negatives, split_seed=seed, test_size=test, valid_size=valid)
    docs = _prepare(plan, exp.corpus, "docs")  # judged documents outside the corpus are dropped, counted
    return plan.add(p, {"queries": all_queries, "run": first_stage, "docs": docs})


def _reranker(plan: Plan, exp: Experiment, s: RerankSystem, runs: dict[str, Node], all_queries: Node,
              precision: str) -> Node | str:
    """The re-ranker's model: its hub id/directory, or the last of its fine-tuning stages."""
    if not s.stages:
        return s.model
    docs = _prepare(plan, exp.corpus, "docs")
    t = s.training
    examples = _examples(plan, exp, runs[t.first_stage], t.depth, t.min_grade, t.negatives, all_queries)
    prev = None
    for st in s.stages:
        prev = _train_stage(plan, s, st, prev, examples, all_queries, docs, precision)
    return prev


def _rerank(plan: Plan, exp: Experiment, s: RerankSystem, model: Node | str, runs: dict[str, Node],
            eval_queries: Node, precision: str) -> Node:
    docs = _prepare(plan, exp.corpus, "docs")
    p = RerankParams(model=_model(plan, model), depth=s.depth, max_length=s.max_length, precision=precision)
    return plan.add(p, {"run": runs[s.first_stage], "queries": eval_queries, "docs": docs}, gpu=True)


# ------------------------------------------------------------------------------- dense training


def _dense_stage(plan: Plan, cls, model: str | None, s: DenseSystem, t: DenseTraining, st: DenseStage,
                 inputs: dict[str, Node | None], colbert: Node | str | None, precision: str) -> Node:
    """One ``irflow train bi-encoder|colbert`` node: only the inputs this stage reads."""
    inputs = {n: v for n, v in inputs.items() if v is not None}
    if st.sampler == "random":
        inputs.pop("clusters", None)
    if st.objective == "infonce" and st.sampler != "tas-balanced":
        inputs.pop("teacher", None)
    common = dict(model=model, query_max_length=t.query_max_length, passage_max_length=t.passage_max_length,
                  validation_depth=t.validation_depth, precision=precision, **st.model_dump())
    if cls is ColbertTrainParams:
        p = ColbertTrainParams(**common)
    else:
        needs_colbert = st.objective in ("inbatch", "dual")
        p = BiEncoderTrainParams(pooling=s.pooling, normalize=s.similarity == "cos", scale=t.scale,
                                 colbert=_model(plan, colbert) if needs_colbert else None, **common)
    return plan.add(p, inputs, gpu=True)


def _dense_trained(plan: Plan, exp: Experiment, s: DenseSystem, runs: dict[str, Node], rerankers: dict,
                   all_queries: Node, precision: str) -> Node:
    """preprocess -> score teacher margins -> (ColBERT teacher) -> stages, with clustering where a
    stage samples by cluster (from the system's model, another model, or an earlier stage)."""
    t = s.training
    docs = _prepare(plan, exp.corpus, "docs")
    if t.queries:  # a separate training set: its own queries, searched with the first stage's index
        all_queries = _prepare(plan, t.queries, "queries")
        first = runs[t.first_stage]
        run = plan.add(first.params.model_copy(update={"k": t.depth}),
                       {**{n: i for n, i in first.inputs.items() if n != "queries"}, "queries": all_queries},
                       gpu=first.gpu)
        examples = _examples(plan, exp, run, t.depth, t.min_grade, t.negatives, all_queries, t.qrels or t.queries,
                             (exp.split.seed if exp.split else 42, 0, t.valid))
    else:
        examples = _examples(plan, exp, runs[t.first_stage], t.depth, t.min_grade, t.negatives, all_queries)
    base = {"examples": examples, "queries": all_queries, "docs": docs}
    stages = [*t.stages, *([t.colbert.stage] if t.colbert and t.colbert.stage else [])]
    depth = max(st.negatives_depth for st in stages)
    if isinstance(t.teacher, str):
        r = exp.systems[t.teacher]
        teacher = _score(plan, [rerankers[t.teacher]], depth, r.max_length, precision, base)
    else:
        teacher = _score(plan, list(t.teacher), depth, t.teacher_max_length, precision, base)
    trained: list[Node] = []
    clusters: Node | None = None

    def cluster_node() -> Node:
        c = t.clusters
        model = plan.path(trained[c.stage - 1]) if c.stage else (c.model or s.model)
        p = ClusterParams(model=model, pooling=s.pooling, normalize=s.similarity == "cos",
                          max_length=t.query_max_length, k=c.k, niter=c.niter, seed=c.seed, precision=precision)
        return plan.add(p, {"examples": examples, "queries": all_queries}, gpu=True)

    colbert: Node | str | None = None
    if t.colbert is not None:
        colbert = t.colbert.model
        if t.colbert.stage is not None:
            if t.colbert.stage.sampler != "random":
                if t.clusters.stage:
                    raise ValueError("the ColBERT teacher cannot sample by clusters of a later stage")
                clusters = cluster_node()
            colbert = _dense_stage(plan, ColbertTrainParams, t.colbert.model, s, t, t.colbert.stage,
                                   {**base, "teacher": teacher, "clusters": clusters}, None, precision)
    prev = None
    for st in t.stages:
        if st.sampler != "random" and clusters is None:
            clusters = cluster_node()
        prev = _dense_stage(plan, BiEncoderTrainParams, None if prev else s.model, s, t, st,
                            {**base, "init": prev, "teacher": teacher, "clusters": clusters}, colbert, precision)
        trained.append(prev)
    return prev


def build(config: Config, store: str = "results/store") -> Plan:
    plan = Plan(store)
    for name, exp in config.experiments.items():
        def prec(s) -> str:
            return getattr(s, "precision", None) or config.precision

        queries = _prepare(plan, exp.queries, "queries")
        eval_queries = queries
        if exp.split is not None:
            eval_queries = _prepare(plan, exp.queries, "queries", split=exp.split)
        runs: dict[str, Node] = {}
        for sname, s in exp.systems.items():
            if isinstance(s, BM25System):
                runs[sname] = _bm25(plan, exp, s, queries, config.precision)
            elif isinstance(s, DenseSystem) and s.training is None:
                runs[sname] = _dense(plan, exp, s, queries, prec(s))
        # re-rankers train on untrained first stages; trained retrievers may distil from them
        rerankers = {n: _reranker(plan, exp, s, runs, queries, prec(s)) for n, s in exp.systems.items()
                     if isinstance(s, RerankSystem)}
        for sname, s in exp.systems.items():
            if isinstance(s, DenseSystem) and s.training is not None:
                model = _dense_trained(plan, exp, s, runs, rerankers, queries, prec(s))
                runs[sname] = _dense(plan, exp, s, queries, prec(s), model)
        for sname, s in exp.systems.items():
            if isinstance(s, RerankSystem):
                runs[sname] = _rerank(plan, exp, s, rerankers[sname], runs, eval_queries, prec(s))
        for sname, s in exp.systems.items():
            if isinstance(s, FusionSystem):
                runs[sname] = _fusion(plan, s, runs)
        runs = {n: runs[n] for n in exp.systems}  # config order
        p = EvaluateParams(qrels=exp.qrels or exp.queries, measure=exp.measures,
                           baseline=exp.baseline or next(iter(exp.systems)))
        plan.experiments[name] = plan.add(p, {"queries": eval_queries, **{f"run:{n}": r for n, r in runs.items()}})
        plan.systems[name] = runs
    return plan
