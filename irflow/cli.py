"""The ``irflow`` command: one subcommand per pipeline step, thin wrappers over the step modules.

Every step command takes ``--store`` (the artifact store root) and writes exactly one directory
``<store>/<step>/<key>/``, whose key it computes from its parameters and its inputs' keys. Under
Snakemake, ``--out`` passes the directory the workflow expects, and a disagreement is an error
rather than a silently different artifact. A step whose directory is already complete does no work.

Only click and the standard library are imported here; each command imports what it needs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from .errors import IrflowError

# OpenMP threads that spin while they wait steal the cores from each other and from neighbouring
# jobs (a Snakemake run, a shared node): measured on 2 busy cores, a bi-encoder training step took
# 14-23 s spinning and 7-9 s passive (bench/README.md). Set before torch is imported; a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_STORE = "results/store"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock", "bm25s", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def handles_errors(fn):
    """Turn an :class:`IrflowError` into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except IrflowError as e:
            name = click.get_current_context().command_path.partition(" ")[2] or "irflow"
            click.echo(f"irflow {name}: error: {e}", err=True)
            sys.exit(2)

    return wrapper


def store_options(fn):
    fn = click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=None,
        help="The artifact directory the caller expects (the workflow passes it); "
        "the command fails if its parameters give another key.",
    )(fn)
    fn = click.option(
        "--store",
        type=click.Path(path_type=Path),
        default=lambda: os.environ.get("IRFLOW_STORE", DEFAULT_STORE),
        show_default=DEFAULT_STORE + " or $IRFLOW_STORE",
        help="Root of the content-addressed artifact store.",
    )(fn)
    return fn


def threads_option(fn):
    return click.option(
        "--threads", type=int, default=None, help="CPU threads (default: the library's own choice)."
    )(fn)


def device_options(fn):
    fn = click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (lease a free GPU, else CPU), cpu, cuda or cuda:N.",
    )(fn)
    return threads_option(fn)


def _describe(path):
    """What an input path is: a complete artifact (its key, step and parameters) or None."""
    from .params import Described
    from .store import is_complete, read_manifest

    if not is_complete(path):
        return None
    m = read_manifest(path)
    return Described(m["key"], m["step"], m.get("params", {}))


def _lease(device: str, precision: str, threads: int | None):
    from .devices import lease_device, resolve_dtype

    if threads:
        import torch

        torch.set_num_threads(threads)
    lease = lease_device(device)
    return lease, resolve_dtype(lease.device, precision)


class Run:
    """One step's invocation: its parameters, input paths and artifact, and the device it leases."""

    def __init__(self, cls, values: dict, store, out, device: str | None = None, threads: int | None = None):
        from .params import key_from_values
        from .store import Artifact

        self.params, key_params, self.paths, _ = key_from_values(cls, values, _describe)
        self.art = Artifact(store, cls.step, key_params, self.paths, expect=out)
        self._device, self.threads = device, threads
        self.device, self.dtype = "cpu", None

    def lease(self) -> None:
        """Lease a device (a GPU if one is free) and resolve the autocast dtype; recorded in the manifest."""
        lease, self.dtype = _lease(self._device or "auto", self.params.precision, self.threads)
        self.device = self.art.device = lease.device
        self.art.stats["autocast"] = str(self.dtype).removeprefix("torch.") if self.dtype is not None else "fp32"

    def build(self, work) -> None:
        """Run ``work()`` (-> stats) into ``self.art.tmp`` unless the artifact is complete; print its path."""
        self.art.build(lambda art: work())
        click.echo(str(self.art.path))


def step_command(group, cls, name: str | None = None, *, device: bool = False, threads: bool = False):
    """A click command for ``cls``: its options, the store's, and the device's (``device``) or only the
    CPU threads (``threads``)."""

    def decorate(body):
        @functools.wraps(body)
        def command(store, out, device=None, threads=None, **values):
            body(Run(cls, values, store, out, device, threads))

        fn = handles_errors(command)
        fn = cls.options(fn)
        fn = store_options(fn)
        if device:
            fn = device_options(fn)
        elif threads:
            fn = threads_option(fn)
        cmd = group.command(name or cls.step, help=body.__doc__)(fn)
        cmd.irflow_params = cls  # what the plan test and the docs read
        return cmd

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="irflow")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """irflow: train and evaluate neural retrieval pipelines as a reproducible DAG.

    Each command is one step of the pipeline and writes one content-addressed directory of the
    store. Snakemake (see the Snakefile) chains them; every command also runs by hand.
    """
    _setup_logging(verbose)


# ---------------------------------------------------------------------------------------- the steps

from .cluster import ClusterParams  # noqa: E402  (the parameter classes import pydantic only)
from .encode import EncodeParams  # noqa: E402
from .evaluate import EvaluateParams  # noqa: E402
from .fuse import FuseParams  # noqa: E402
from .index.bm25 import BM25Params  # noqa: E402
from .index.dense import FaissParams  # noqa: E402
from .prepare import PrepareParams  # noqa: E402
from .preprocess import PreprocessParams  # noqa: E402
from .rerank import RerankParams  # noqa: E402
from .score import ScoreParams  # noqa: E402
from .search import SearchParams  # noqa: E402
from .train.params import BiEncoderTrainParams, ColbertTrainParams, CrossEncoderTrainParams  # noqa: E402


@step_command(cli, PrepareParams)
def prepare(r: Run):
    """Read a corpus or query set once into memory-mapped Arrow (ids, texts, token ids)."""
    from .prepare import prepare as run

    r.build(lambda: run(r.params, r.art.tmp))


@step_command(cli, EncodeParams, device=True)
def encode(r: Run):
    """Encode one shard of a prepared corpus into float16 emb.npy + ids.parquet."""
    from .encode import encode_shard

    def work():
        r.lease()
        return encode_shard(r.params, Path(r.paths["prepared"]), r.art.tmp, device=r.device,
                            autocast_dtype=r.dtype, max_tokens=r.params.max_tokens)

    r.build(work)


@cli.group()
def index():
    """Build an index: BM25 over a corpus's texts, or faiss over encoded shards."""


@step_command(index, BM25Params, "bm25", threads=True)
def index_bm25(r: Run):
    """Build a BM25 index (bm25s) over a prepare artifact's texts, streamed in record batches."""
    from .index.bm25 import build_from_prepared

    r.build(lambda: build_from_prepared(r.params, Path(r.paths["texts"]), r.art.tmp, workers=r.threads or 1))


@step_command(index, FaissParams, "faiss", threads=True)
def index_faiss(r: Run):
    """Merge encoded shards into a faiss index (any index_factory string, inner product)."""
    from .index.dense import build

    def work():
        if r.threads:
            from .index.faisslib import load

            load().omp_set_num_threads(r.threads)
        r.art.seed = r.params.seed
        shards = [Path(r.paths[n]) for n in sorted((n for n in r.paths if n.startswith("shard")),
                                                   key=lambda n: int(n[5:]))]
        return build(r.params, shards, r.art.tmp)

    r.build(work)


@step_command(cli, SearchParams, device=True)
def search(r: Run):
    """Search an index with a query set into a TREC run (strictly decreasing scores)."""
    from .index import read_info
    from .search import search as run

    indexes = [Path(r.paths[n]) for n in sorted((n for n in r.paths if n.startswith("index")), key=lambda n: int(n[5:]))]

    def work():
        if read_info(indexes[0])["type"] != "bm25":
            r.lease()
        return run(r.params, indexes, Path(r.paths["queries"]), r.art.tmp, device=r.device,
                   autocast_dtype=r.dtype, threads=r.threads)

    r.build(work)


@step_command(cli, FuseParams)
def fuse(r: Run):
    """Fuse runs: reciprocal rank fusion or normalised CombSUM."""
    from .fuse import fuse_runs

    runs = [Path(r.paths[n]) for n in sorted((n for n in r.paths if n.startswith("run")), key=lambda n: int(n[3:]))]
    r.build(lambda: fuse_runs(r.params, runs, r.art.tmp))


@step_command(cli, EvaluateParams)
def evaluate(r: Run):
    """Evaluate runs with ir_measures: means, per-query values, paired t-tests against a baseline."""
    from .evaluate import evaluate_step

    named = {n.split(":", 1)[1]: Path(p) for n, p in r.paths.items() if n.startswith("run:")}
    baseline = r.art.params["baseline"]
    r.build(lambda: evaluate_step(named, r.params.qrels, Path(r.paths["queries"]), r.params.measure, baseline,
                                  r.art.tmp))


@step_command(cli, PreprocessParams)
def preprocess(r: Run):
    """Turn a training source into per-query examples (positives, candidate negatives, teacher)."""
    from .preprocess import preprocess as run
    from .search import RUN

    p = r.params

    def work():
        r.art.seed = p.split_seed
        return run(p, Path(r.paths["queries"]), Path(r.paths["run"]) / RUN if "run" in r.paths else
                   (Path(p.run_file) if p.run_file else None), r.art.tmp, docs_dir=_input(r, "docs"),
                   negatives=p.negatives)

    r.build(work)


@step_command(cli, ClusterParams, device=True)
def cluster(r: Run):
    """Cluster the training queries with faiss k-means over a dense encoder (topic-aware sampling)."""
    from .cluster import cluster_queries

    def work():
        r.lease()
        r.art.seed = r.params.seed
        return cluster_queries(r.params, Path(r.paths["examples"]), Path(r.paths["queries"]), r.art.tmp,
                               device=r.device, autocast_dtype=r.dtype)

    r.build(work)


@cli.group()
def train():
    """Fine-tune one stage of a model: a re-ranker, a dense retriever or a ColBERT teacher.

    Checkpoints beside the artifact allow exact resume after a kill; validation with early
    stopping keeps the best model.
    """


def _train(r: Run, work) -> None:
    """The shared body of the three families: checkpoints beside the artifact, removed once published.

    Under torchrun (RANK/WORLD_SIZE set) the stage trains data-parallel: see :func:`_train_ranks`.
    """
    import shutil

    from .train.dist import from_env

    ckpt = r.art.path.parent / f".ckpt-{r.art.key}"
    d = from_env()
    if d.active:
        _train_ranks(r, work, ckpt, d)
    else:
        def run():
            r.lease()
            r.art.seed = r.params.seed
            return work(ckpt, d)

        r.build(run)
    if d.main:
        shutil.rmtree(ckpt, ignore_errors=True)
        ckpt.with_name(ckpt.name + ".train_log.jsonl").unlink(missing_ok=True)


def _train_ranks(r: Run, work, ckpt: Path, d) -> None:
    """One rank of a data-parallel stage: each leases its device and joins the process group; rank 0
    alone takes the key's lock, decides (complete already, or build) and publishes.

    No deadlock on the lock: only rank 0 takes it; the other ranks wait for its decision in a
    broadcast (``IRFLOW_DIST_TIMEOUT`` seconds at most, a day by default), so a second launch of the
    same key waits as a whole behind the first and then reuses its artifact.
    """
    from .train import dist

    if r.params.devices != d.world:  # before anything waits on anybody
        raise IrflowError(f"devices is {r.params.devices} but torchrun started {d.world} processes (WORLD_SIZE)")
    if (r._device or "auto").startswith("cuda:"):
        raise IrflowError(f"--device {r._device} names one device for all {d.world} processes: use auto or cuda")
    r.lease()
    r.device = r.art.device = dist.local_device(r.device, d)
    dist.init(d, r.device)
    try:
        if d.main:
            def run():
                dist.broadcast_object(True, d)  # the others train along
                r.art.seed = r.params.seed
                r.art.stats["devices"] = d.world
                return work(ckpt, d)

            started = []
            r.build(lambda: (started.append(1), run())[1])
            if not started:
                dist.broadcast_object(False, d)  # complete already: nobody trains
        elif dist.broadcast_object(None, d):
            work(ckpt, d)
        dist.barrier(d)
    finally:
        dist.shutdown(d)


def _input(r: Run, name: str) -> Path | None:
    return Path(r.paths[name]) if name in r.paths else None


@step_command(train, CrossEncoderTrainParams, "cross-encoder", device=True)
def train_cross_encoder(r: Run):
    """Fine-tune a cross-encoder (re-ranker) stage: lce, ranknet, margin-mse or kl."""
    from .train.step import train_cross_encoder as run

    _train(r, lambda ckpt, d: run(r.params, _input(r, "init"), _input(r, "examples"), _input(r, "queries"),
                                  _input(r, "docs"), _input(r, "teacher"), r.art.tmp, ckpt, key=r.art.key,
                                  device=r.device, autocast_dtype=r.dtype, stop_after=r.params.stop_after, dist=d))


def _train_dense(r: Run, colbert: str | None) -> None:
    from .train.step import train_dense

    _train(r, lambda ckpt, d: train_dense(r.params, _input(r, "init"), _input(r, "examples"), _input(r, "queries"),
                                          _input(r, "docs"), _input(r, "teacher"), _input(r, "clusters"), colbert,
                                          r.art.tmp, ckpt, key=r.art.key, device=r.device, autocast_dtype=r.dtype,
                                          stop_after=r.params.stop_after, dist=d))


@step_command(train, BiEncoderTrainParams, "bi-encoder", device=True)
def train_bi_encoder(r: Run):
    """Fine-tune a bi-encoder (dense retriever) stage: margin-mse, inbatch, dual or infonce; random, tas or
    tas-balanced sampling."""
    _train_dense(r, r.params.colbert if r.params.objective in ("inbatch", "dual") else None)


@step_command(train, ColbertTrainParams, "colbert", device=True)
def train_colbert(r: Run):
    """Fine-tune a ColBERT in-batch teacher with pairwise Margin-MSE on the cross-encoder's margins."""
    _train_dense(r, None)


@step_command(cli, ScoreParams, device=True)
def score(r: Run):
    """Score training candidate pairs with a teacher (or a mean ensemble) into teacher.parquet."""
    import shutil

    from .score import score_teacher

    partial = r.art.path.parent / f".partial-{r.art.key}-{r.params.chunk}"  # finished chunks outlive a kill

    def work():
        r.lease()
        p = r.params
        return score_teacher(list(p.model), Path(r.paths["examples"]), Path(r.paths["queries"]),
                             Path(r.paths["docs"]), r.art.tmp, depth=p.depth, device=r.device,
                             autocast_dtype=r.dtype, max_length=p.max_length, partial=partial,
                             chunk=p.chunk, stop_after=p.stop_after)

    r.build(work)
    shutil.rmtree(partial, ignore_errors=True)


@step_command(cli, RerankParams, device=True)
def rerank(r: Run):
    """Re-rank the top of a run with a cross-encoder into a new run."""
    from .rerank import rerank as run

    def work():
        r.lease()
        p = r.params
        return run(p.model, Path(r.paths["run"]), Path(r.paths["queries"]), Path(r.paths["docs"]), r.art.tmp,
                   depth=p.depth, device=r.device, autocast_dtype=r.dtype, max_length=p.max_length)

    r.build(work)


# ----------------------------------------------------------------------------------- info / verify


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path, exists=True, file_okay=False))
@handles_errors
def info(artifact):
    """Print an artifact's manifest: what made it, from what, with which versions."""
    from .store import read_manifest

    click.echo(json.dumps(read_manifest(artifact), indent=2, sort_keys=True))


@cli.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@handles_errors
def verify(artifacts):
    """Re-hash artifacts' files against their manifests; exit 1 if any differ."""
    from .store import verify as check

    bad = 0
    for a in artifacts:
        problems = check(a)
        for p in problems:
            click.echo(f"{a}: {p}")
        if not problems:
            click.echo(f"{a}: ok")
        bad += bool(problems)
    if bad:
        sys.exit(1)


# ------------------------------------------------------------------------------ housekeeping / report


def config_options(fn):
    fn = click.option("--config", "config_file", type=click.Path(path_type=Path), default=Path("config/config.yaml"),
                      show_default=True, help="The workflow config whose plan says what is in use.")(fn)
    fn = click.option("--store", type=click.Path(path_type=Path),
                      default=lambda: os.environ.get("IRFLOW_STORE", DEFAULT_STORE),
                      show_default=DEFAULT_STORE + " or $IRFLOW_STORE", help="Root of the artifact store.")(fn)
    return fn


@cli.command("ls")
@config_options
@click.option("--unused", is_flag=True, help="Only what no experiment of the config uses.")
@handles_errors
def ls(store, config_file, unused):
    """List the store: step, key, size, age, what made it, which experiments of the config use it."""
    from .housekeeping import human_age, human_bytes, judge, load_plan, scan

    entries = judge(store, scan(store, load_plan(config_file, store)))
    click.echo("step\tkey\tsize\tage\tmade by\tused by")
    for e in entries:
        if unused and e.why_kept:
            continue
        what = e.made_by if e.kind == "artifact" else f"{e.made_by} {e.path.name}"
        used = ",".join(e.experiments) or ("-" if e.kind == "artifact" else e.why_kept or "-")
        click.echo(f"{e.step}\t{e.key}\t{human_bytes(e.bytes)}\t{human_age(e.age_s)}\t{what}\t{used}")
    total = sum(e.bytes for e in entries)
    click.echo(f"{len(entries)} entries, {human_bytes(total)}", err=True)


@cli.command()
@config_options
@click.option("--yes", is_flag=True, help="Delete (without it: a dry run that only lists what would go).")
@handles_errors
def gc(store, config_file, yes):
    """Remove artifacts no experiment of the config reaches, and orphaned temporary and checkpoint folders.

    Never touches an artifact whose build lock a running job holds. Dry run unless --yes.
    """
    from .housekeeping import collect_garbage, human_bytes, load_plan

    res = collect_garbage(store, load_plan(config_file, store), delete=yes)
    for e in res.removed:
        click.echo(f"{'removed' if yes else 'would remove'}\t{e.kind}\t{e.path}\t{human_bytes(e.bytes)}")
    for e in res.busy:
        click.echo(f"kept (busy)\t{e.kind}\t{e.path}\t{e.why_kept}")
    verb = "freed" if yes else "would free (dry run; --yes deletes)"
    click.echo(f"{verb} {res.bytes} bytes ({human_bytes(res.bytes)}) in {len(res.removed)} entries; "
               f"{len(res.kept)} kept, {len(res.busy)} busy")


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@config_options
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The HTML file [default: results/<experiment>/report/index.html, or report.html for artifacts].")
@click.option("--benchmarks", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True,
              help="Snakemake's benchmark folder (time and peak memory per step).")
@handles_errors
def report(targets, store, config_file, out, benchmarks):
    """Write one self-contained HTML page of experiments' results and figures (no Snakemake needed).

    TARGETS are evaluation artifacts (directories) or experiment names of the config. The page shows
    what `snakemake --report` shows: the results table with p-values, per-query nDCG@10 against the
    baseline, recall@k, training curves, teacher margins, cluster sizes, time and memory per step.
    """
    from .report import write_page
    from .store import is_complete

    named, plan = {}, None
    for t in targets:
        if Path(t).is_dir():
            named[f"{Path(t).parent.name} {Path(t).name}"] = Path(t)
            continue
        if plan is None:
            from .housekeeping import load_plan

            plan = load_plan(config_file, store)
        if t not in plan.experiments:
            raise IrflowError(f"neither an artifact directory nor an experiment of {config_file} "
                              f"({', '.join(sorted(plan.experiments))})", where=t)
        d = Path(plan.path(plan.experiments[t]))
        if not is_complete(d):
            raise IrflowError(f"experiment {t} is not evaluated yet (run: snakemake results/{t}/ndcg.tsv)", where=d)
        named[t] = d
    if out is None:
        out = Path("results") / targets[0] / "report" / "index.html" if targets[0] in named else Path("report.html")
    click.echo(str(write_page(named, out, benchmarks)))


def main() -> None:
    cli(prog_name="irflow")


if __name__ == "__main__":
    main()
