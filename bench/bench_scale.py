#!/usr/bin/env python3
"""How the pipeline grows from 10k to 1M passages: wall time and peak RSS of every step.

Why: irflow exists for MS MARCO (8.8M passages, ~500k training queries), but its tests run on a
few hundred passages, where no step's cost shows. This script runs the real pipeline (the
``irflow`` commands under the repo's Snakefile, ``snakemake --cores 2``) on the streaming synthetic
collections ``synthetic:scale-10k``, ``scale-100k`` and ``scale-1m`` and reads each job's wall time
and peak RSS from Snakemake's ``benchmark:`` files (``benchmarks/<rule>/<key>.tsv``), corrected by the
job's own account in its manifest (``resources``: CPU time and the kernel's peak-RSS high-water mark,
exact where Snakemake samples every 30 s after the first 15 s and loses a job's tail). It needs no
network and no GPU: the model is a deliberately tiny, randomly initialised 2-layer BERT (hidden
size 128) with a WordPiece tokenizer trained on a sample of the synthetic corpus, built on the fly,
so that the model's own cost does not hide the pipeline's.

Per size one experiment: ``bm25``; ``dense`` (the tiny model, per-shard indexes, exact search);
and unless ``--no-train`` a ``rerank`` system that re-ranks BM25's top 20 with the tiny model after
a two-stage training chain on the experiment's training queries (LCE on BM25 negatives, then KL from
the stage-1 model's scores: preprocess -> train -> score -> train -> rerank). The evaluation queries
(``--queries``) are the same number at every size, so every step's growth is the corpus' alone
(exact dense search, linear in passages x queries, is linear in passages here); the training
queries are the rest of the collection's 10,000 (or 100,000 with ``--train-queries 100k``).

It prints a table (step x size: wall seconds, CPU seconds, peak MB; a step's jobs summed, the
peak their maximum) and each step's growth exponent between consecutive sizes: log(ratio of CPU
time) / log(ratio of passages), with the wall-time exponent beside it. The check uses CPU time: on
a shared machine wall time measures the neighbours as much as the step. CPU time and peak RSS are
the job's own (its manifest's ``resources``); Snakemake's sampled figures are used only for jobs
whose manifest lacks them.
``--check`` asserts the bounds of issue 9 that the measured sizes can test:

* every step's exponent between 100k and 1M passages is <= 1.1 (at most linear);
* encode, score, rerank and train: peak RSS < 1 GB, and not growing with the corpus (largest size
  <= 1.25 x smallest + 64 MB);
* BM25 index build: what the build's peak RSS grows by from the smallest size to the largest is at
  most 3x what the index on disk grows by (the interpreter and libraries are not the index);
* dense search: its peak RSS grows by at most one shard's index plus the queries (texts and
  vectors; x 1.25 + 64 MB), i.e. no process holds the whole index.

Each run saves its results in the work dir; ``--report WORK...`` runs nothing and prints (and checks)
what the work dirs hold, finished jobs only, e.g. sizes run in separate work dirs or a stopped run.
``--readme`` writes the table into bench/README.md (section "Scale"). Run it with ``nice`` on a
shared machine; ``--sizes 10k`` is the smoke run (tests/test_bench_scale.py).
``--model`` replaces the tiny model (bench/gpu_check.sh runs all-MiniLM-L6-v2 on a GPU), and
``--systems`` picks the systems (``dense`` alone for an encode + search throughput run).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's irflow (plan, config) and bench/common.py

from common import cpu_load, log

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
MODEL_STEPS = ("encode", "score", "rerank", "train")  # memory must not grow with the corpus
MEM_LIMIT_MB = 1024
RESULTS = "scale-results.json"  # per work dir: the measured sizes, for --report


# ------------------------------------------------------------------------------------ tiny model


def build_tiny_model(out: Path, sample: int = 5000, vocab: int = 8000) -> Path:
    """A randomly initialised 2-layer BERT (hidden 128) and a WordPiece tokenizer trained on a sample.

    Seeded, so the same weights (hence the same store keys) every time; built once per work dir.
    """
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from irflow.data.synthetic import iter_docs, iter_queries

    texts = [t for _, (_, t) in zip(range(sample), iter_docs("scale-10k"))]
    texts += [t for _, (_, t) in zip(range(sample // 5), iter_queries("scale-10k"))]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    tmp = out.with_name(out.name + ".tmp")
    fast.save_pretrained(tmp)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(tmp)
    tmp.rename(out)
    return out


# ---------------------------------------------------------------------------------------- config


def experiment(size: str, model: str, args) -> dict:
    systems: dict = {}
    if "bm25" in args.systems or "rerank" in args.systems:
        systems["bm25"] = {"type": "bm25", "k": 100}
    if "dense" in args.systems:
        systems["dense"] = {"type": "dense", "model": model, "doc_max_length": args.doc_max_length,
                            "query_max_length": 32, "shards": args.shards, "index_per_shard": True, "k": 100}
    if "rerank" in args.systems:
        r = {"type": "rerank", "first_stage": "bm25", "depth": 20, "model": model, "max_length": 64}
        if args.train:
            st = {"batch_queries": 2, "group_size": 8, "lr": 1.0e-4, "max_steps": args.train_steps}
            r.update(training={"first_stage": "bm25", "depth": args.train_depth, "min_grade": 2},
                     stages=[{"objective": "lce", **st},
                             {"objective": "kl", "teacher": "previous", "negatives_depth": args.score_depth, **st}])
        systems["rerank"] = r
    suffix = "-q100k" if args.train_queries == "100k" else ""
    name = f"scale-{size}{suffix}"
    return {"corpus": f"synthetic:{name}", "queries": f"synthetic:{name}",
            "baseline": next(iter(systems)),
            "split": {"seed": 1, "test": args.queries, "valid": args.valid},
            "systems": systems}


# ------------------------------------------------------------------------------------ measuring


def _label(plan, node) -> str:
    """A step's row in the table: the rule plus what tells its jobs apart."""
    p = node.params
    step = node.step
    if step == "prepare":
        what = p.kind + (" tokens" if p.tokenizer else " text") + (f" {p.split}" if p.split else "")
        return f"prepare {what}"
    if step == "index":
        return "index " + ("bm25" if type(p).__name__ == "BM25Params" else "faiss")
    if step == "search":
        bm25 = any(i.step == "index" and type(i.params).__name__ == "BM25Params" for i in node.inputs.values())
        return "search " + ("bm25" if bm25 else "dense")
    if step == "train":  # by objective: the same row at every size (keys sort differently)
        return f"train {getattr(p, 'objective', type(p).__name__)}"
    return step


def _ancestors(node, seen=None) -> list:
    seen = {} if seen is None else seen
    if id(node) not in seen:
        seen[id(node)] = node
        for i in node.inputs.values():
            _ancestors(i, seen)
    return list(seen.values())


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _rows(prepared: Path) -> int:
    import pyarrow as pa

    with pa.memory_map(str(prepared / "texts.arrow")) as f:
        try:
            return pa.ipc.open_file(f).read_all().num_rows
        except pa.ArrowInvalid:
            f.seek(0)
            return pa.ipc.open_stream(f).read_all().num_rows


def _bench_row(path: Path) -> dict | None:
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return None
    r = rows[-1]

    def num(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            return float("nan")

    return {"s": num(r.get("s")), "mb": num(r.get("max_rss")), "cpu": num(r.get("cpu_time"))}


def _manifest(artifact: Path) -> dict:
    try:
        return json.loads((artifact / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def measure(work: Path, plan, exp_name: str) -> tuple[dict, dict]:
    """Per label: seconds (summed over its jobs), peak MB (max), jobs; plus sizes on disk."""
    steps: dict[str, dict] = {}
    planned: dict[str, int] = {}
    sizes = {"bm25_index": 0, "faiss_shard_max": 0, "queries": 0}
    nodes = sorted(_ancestors(plan.experiments[exp_name]), key=lambda n: (n.step, n.key))
    for node in nodes:
        label = _label(plan, node)
        planned[label] = planned.get(label, 0) + 1
        b = _bench_row(work / "benchmarks" / node.step / f"{node.key}.tsv")
        art = work / plan.path(node)
        if b is not None:  # the job's own exact account, where its manifest has one (see irflow.store)
            used = _manifest(art).get("resources") or {}
            if "cpu_s" in used:
                b["cpu"] = used["cpu_s"]
            if "peak_rss_mb" in used:
                b["mb"] = max(b["mb"], used["peak_rss_mb"])
        if label == "index bm25":
            sizes["bm25_index"] = _du(art)
        elif label == "index faiss":
            sizes["faiss_shard_max"] = max(sizes["faiss_shard_max"], _du(art))
        elif label == "search dense":  # the queries it encodes (all of the collection's): texts + vectors
            q = node.inputs["queries"]
            sizes["queries"] = _du(work / plan.path(q)) + 4 * 128 * _rows(work / plan.path(q))
        if b is None:
            continue
        s = steps.setdefault(label, {"s": 0.0, "mb": 0.0, "cpu": 0.0, "jobs": 0})
        s["s"] += b["s"]
        s["cpu"] += b["cpu"]
        s["mb"] = max(s["mb"], b["mb"])
        s["jobs"] += 1
    for label, s in steps.items():
        s["planned"] = planned[label]
    return steps, sizes


def collect(work: Path) -> dict:
    """Every size of a work dir's config, measured from the benchmark files there (finished jobs only).

    So a run that was stopped (or is still going) reports what it finished; the wall time of the
    whole run is known only from a completed run (the saved results), else left out.
    """
    import yaml

    from irflow.config import validate
    from irflow.plan import build

    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    plan = build(validate(config), store="results/store")
    saved = json.loads((work / RESULTS).read_text()) if (work / RESULTS).exists() else {}
    out = {}
    for name, e in config["experiments"].items():
        size = e["corpus"].split("scale-", 1)[1].split("-", 1)[0]
        steps, disk = measure(work, plan, name)
        if steps:
            out[size] = {"steps": steps, "sizes": disk, "wall": saved.get(size, {}).get("wall", float("nan"))}
    return out


# ----------------------------------------------------------------------------------- reporting


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    if not (t1 > 0 and t2 > 0):
        return float("nan")
    return math.log(t2 / t1) / math.log(n2 / n1)


def _complete(result: dict, label: str) -> dict | None:
    """A step's measurement if every one of its jobs was measured (a stopped run has some missing)."""
    m = result["steps"].get(label)
    return m if m is not None and m["jobs"] >= m.get("planned", m["jobs"]) else None


def table(results: dict) -> list[str]:
    """Markdown: one row per step, per size "seconds / MB", then the exponents between sizes."""
    sizes = list(results)
    labels: list[str] = []
    for size in sizes:
        for label in results[size]["steps"]:
            if label not in labels:
                labels.append(label)
    order = ["prepare", "index", "encode", "search", "preprocess", "train", "score", "rerank", "fuse", "evaluate"]
    labels.sort(key=lambda lb: (order.index(lb.split()[0]) if lb.split()[0] in order else 99, lb))
    pairs = list(itertools.pairwise(sizes))
    head = ["step"] + [f"{s}: wall s / cpu s / MB" for s in sizes] + [f"exp {a}->{b}: cpu (wall)" for a, b in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lb in labels:
        cells = [lb]
        for s in sizes:
            m = results[s]["steps"].get(lb)
            if m is None:
                cells.append("-")
                continue
            planned = m.get("planned", m["jobs"])
            jobs = f" ({m['jobs']} of {planned} jobs)" if m["jobs"] < planned else \
                (f" ({m['jobs']} jobs)" if m["jobs"] > 1 else "")
            cells.append(f"{m['s']:.1f} / {m['cpu']:.1f} / {m['mb']:.0f}{jobs}")
        for a, b in pairs:
            ma, mb = _complete(results[a], lb), _complete(results[b], lb)
            e = exponent(ma["cpu"], mb["cpu"], SIZES[a], SIZES[b]) if ma and mb else float("nan")
            w = exponent(ma["s"], mb["s"], SIZES[a], SIZES[b]) if ma and mb else float("nan")
            cells.append("-" if math.isnan(e) else f"{e:.2f} ({w:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**all steps (wall of the run)**"] + [
        f"{results[s]['wall']:.0f} s" if results[s]["wall"] == results[s]["wall"] else "(stopped)" for s in sizes]
    total += [""] * len(pairs)
    lines.append("| " + " | ".join(total) + " |")
    return lines


def check(results: dict) -> list[str]:
    """The bounds of issue 9 that these sizes can test; a list of violations (empty: all hold)."""
    bad: list[str] = []
    sizes = list(results)
    if "100k" in results and "1m" in results:
        for lb in results["1m"]["steps"]:
            m1, m2 = _complete(results["100k"], lb), _complete(results["1m"], lb)
            if m1 is None or m2 is None:
                continue
            # CPU time: on a shared machine wall time mostly measures the neighbours. Exact dense
            # search is linear in passages x queries; the queries are the same at every size.
            e = exponent(m1["cpu"], m2["cpu"], SIZES["100k"], SIZES["1m"])
            if e > 1.1:
                bad.append(f"{lb}: CPU-time exponent 100k->1m {e:.2f} > 1.1")
    for size in sizes:
        for lb, m in results[size]["steps"].items():
            if lb.split()[0] in MODEL_STEPS and m["mb"] >= MEM_LIMIT_MB:
                bad.append(f"{lb} at {size}: peak {m['mb']:.0f} MB >= {MEM_LIMIT_MB} MB")
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        a, b = results[lo], results[hi]
        for lb in b["steps"]:
            m1, m2 = _complete(a, lb), _complete(b, lb)
            if m1 is None or m2 is None:
                continue
            grow = m2["mb"] - m1["mb"]
            if lb.split()[0] in MODEL_STEPS and m2["mb"] > 1.25 * m1["mb"] + 64:
                bad.append(f"{lb}: peak RSS grows with the corpus ({m1['mb']:.0f} MB at {lo}, {m2['mb']:.0f} at {hi})")
            if lb == "index bm25":
                bound = 3 * (b["sizes"]["bm25_index"] - a["sizes"]["bm25_index"]) / 2**20
                if grow > bound:
                    bad.append(f"index bm25: build RSS grows {grow:.0f} MB {lo}->{hi}, > 3x the index growth "
                               f"({bound / 3:.0f} MB)")
            if lb == "search dense":
                bound = 1.25 * (b["sizes"]["faiss_shard_max"] + b["sizes"]["queries"]) / 2**20 + 64
                if grow > bound:
                    bad.append(f"search dense: RSS grows {grow:.0f} MB {lo}->{hi}, more than one shard's index "
                               f"plus the queries ({bound:.0f} MB with margin)")
    return bad


def write_readme(lines: list[str], note: str) -> None:
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    block = "\n".join(["### Scale: measured", "", note, "", *lines, ""])
    start = text.find("### Scale: measured")
    if start >= 0:
        end = text.find("\n## ", start)
        text = text[:start] + block + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    readme.write_text(text)


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k,1m", help="comma-separated passages: 10k, 100k, 1m")
    ap.add_argument("--systems", default="bm25,dense,rerank", help="comma-separated: bm25, dense, rerank")
    ap.add_argument("--no-train", dest="train", action="store_false", help="rerank with the untrained model")
    ap.add_argument("--train-queries", choices=["10k", "100k"], default="10k")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--score-depth", type=int, default=10, help="teacher-scored candidates per training query")
    ap.add_argument("--train-depth", type=int, default=20, choices=range(1, 101), metavar="1..100",
                    help="first-stage candidates per training query in the examples (the lce stage's pairs)")
    ap.add_argument("--queries", type=int, default=1000,
                    help="evaluation (test) queries, the same at every size (searches run over all queries)")
    ap.add_argument("--valid", type=int, default=100)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--doc-max-length", type=int, default=64)
    ap.add_argument("--model", default=None, help="bi-/cross-encoder instead of the tiny model (e.g. all-MiniLM-L6-v2)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "irflow-bench-scale")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--snakemake-arg", action="append", default=[], help="passed on (e.g. --resources gpu=1)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a bound of issue 9 is violated")
    ap.add_argument("--readme", action="store_true", help="write the table into bench/README.md")
    ap.add_argument("--report", type=Path, nargs="+", metavar="WORK",
                    help="run nothing: merge the results saved in these work dirs (e.g. sizes run apart)")
    args = ap.parse_args(argv)
    if args.report:
        results = {}
        for d in args.report:
            results.update(collect(d.resolve()))
        results = {s: results[s] for s in sorted(results, key=SIZES.get)}
        return report(results, args, None)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}; known: {', '.join(SIZES)}")
    sizes.sort(key=SIZES.get)

    import yaml

    from irflow.config import validate
    from irflow.plan import build

    work = args.work.resolve()
    (work / "config").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               IRFLOW_GPU_LOCK_DIR=str(work / "gpu-locks"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    t0 = time.time()
    model = args.model or str(build_tiny_model(work / "tiny-bert"))
    log(f"# bench_scale  {time.strftime('%Y-%m-%d %H:%M')}  cores={os.cpu_count()}  load={cpu_load():.1f}  "
        f"model={'tiny 2-layer BERT h128' if not args.model else model} (ready in {time.time() - t0:.0f} s)  "
        f"work={work}")
    config = {"experiments": {}}
    names = {}
    for size in sizes:
        e = experiment(size, model, args)
        names[size] = e["corpus"].split(":", 1)[1]
        config["experiments"][names[size]] = e
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = build(validate(config), store="results/store")

    results: dict = {}
    failed = None
    for size in sizes:
        target = f"results/{names[size]}/ndcg.tsv"
        cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
               "--cores", str(args.cores), *args.snakemake_arg, target]
        load0, t = cpu_load(), time.time()
        log(f"## {size}: {' '.join(cmd[2:])}")
        r = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, check=False)
        wall = time.time() - t
        steps, disk = measure(work, plan, names[size])
        results[size] = {"steps": steps, "sizes": disk, "wall": wall}
        if r.returncode == 0:  # saved for --report (sizes run in separate work dirs or sessions)
            saved = json.loads((work / RESULTS).read_text()) if (work / RESULTS).exists() else {}
            saved[size] = results[size]
            (work / RESULTS).write_text(json.dumps(saved, indent=1))
        log(f"   {wall:.0f} s, load {load0:.1f} -> {cpu_load():.1f}, {sum(m['jobs'] for m in steps.values())} jobs "
            f"measured; bm25 index {disk['bm25_index'] / 2**20:.1f} MB, largest faiss shard "
            f"{disk['faiss_shard_max'] / 2**20:.1f} MB")
        if r.returncode != 0:
            failed = size
            log(r.stdout[-3000:] + r.stderr[-5000:])
            for p in sorted((work / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]:
                log(f"== {p}\n{p.read_text()[-2000:]}")
            break
        if args.model:  # a throughput run: passages/s of encode, queries/s of dense search
            enc, srch = steps.get("encode"), steps.get("search dense")
            if enc:
                log(f"   encode: {SIZES[size] / enc['s']:.0f} passages/s (wall of {enc['jobs']} shard jobs summed)")
            if srch:
                n = 100_000 if args.train_queries == "100k" else 10_000  # every query of the collection
                log(f"   search dense: {n / srch['s']:.1f} queries/s over {SIZES[size]} passages "
                    f"({n} queries, query encoding included, {srch['jobs']} job)")

    return report(results, args, failed)


def report(results: dict, args, failed: str | None) -> int:
    lines = table(results)
    log("")
    for line in lines:
        log(line)
    if args.readme and results:
        note = (f"{time.strftime('%Y-%m-%d %H:%M')}, this project's 2-core machine, **loaded** (other "
                f"engineers' jobs and a full test run; load average {cpu_load():.1f} at the end), run under "
                f"`nice -n 10`; {args.queries} evaluation queries, training queries {args.train_queries}, "
                f"tiny model, doc_max_length {args.doc_max_length}, {args.shards} shards. Seconds are wall time "
                "from the Snakemake benchmark files (summed over a step's jobs), MB the peak RSS (max over "
                "its jobs); exponents are log(time ratio) / log(passages ratio).")
        write_readme(lines, note)
    if failed:
        log(f"FAILED at {failed}")
        return 2
    if args.check:
        bad = check(results)
        for b in bad:
            log(f"CHECK FAILED: {b}")
        if bad:
            return 1
        log("check: all bounds hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
