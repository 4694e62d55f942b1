#!/usr/bin/env python
"""Peak memory of one in-batch (InfoNCE) bi-encoder training step, with and without GradCache.

The claim to check (issue 11): with gradient caching a batch of 512 triples trains within the
memory of a batch of 32, because no more than one chunk's activations are ever held.

Each configuration runs in a fresh process (so that no allocator cache of an earlier one counts):
a tiny randomly initialised BERT (``--layers`` x ``--hidden``, all-MiniLM-L6-v2's tokenizer) as an
irflow :class:`~irflow.models.dense.DenseModel`, the real
:class:`~irflow.train.biencoder.BiEncoderTask` loss (objective ``infonce``) on ``b`` triples of
the synthetic demo collection (queries cut at ``--query-max-length`` tokens, passages padded to
``--passage-max-length``), ``loss.backward()`` and an AdamW step, as the training loop does.
A warm-up step with a small batch runs first (the optimizer's moments exist afterwards, as in
training). The peak is the process's resident-set high-water mark (``VmHWM``) during the measured
step, reset beforehand through ``/proc/self/clear_refs``; the table shows it minus the resident
set right before the step, i.e. what the step itself needed. CPU only; timings are not the point.

    python bench/bench_gradcache.py                  # b = 32 and 512, without and with chunk 32
    python bench/bench_gradcache.py --sizes 32 128 --chunk 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_load, log  # noqa: E402


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def tiny_model(out: Path, layers: int, hidden: int) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from irflow.models.resolve import resolve

    tok = AutoTokenizer.from_pretrained(resolve("all-MiniLM-L6-v2"))
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                     max_position_embeddings=512)
    BertModel(cfg).save_pretrained(out)
    return out


def one(args) -> dict:
    """Measure one configuration in this process; returns the numbers as a dict."""
    import torch

    torch.set_num_threads(args.threads)
    from irflow.data.synthetic import generate
    from irflow.models.dense import DenseModel
    from irflow.train.biencoder import BiEncoderTask, DenseConfig

    model = DenseModel(args.model, "mean", True, None).train()
    coll = generate("demo")
    docs = [t for _, t in coll.docs]
    queries = [t for _, t in coll.queries]

    def batch(b: int):
        q = model.tokenizer([queries[i % len(queries)] for i in range(b)], truncation=True,
                            max_length=args.query_max_length, padding="max_length", return_tensors="pt")
        d = model.tokenizer([docs[i % len(docs)] for i in range(2 * b)], truncation=True,
                            max_length=args.passage_max_length, padding="max_length", return_tensors="pt")
        ids = ([f"d{i % len(docs)}" for i in range(2 * b)], [f"q{i % len(queries)}" for i in range(b)])
        return q, d, torch.zeros(b, 2), None, ids

    cfg = DenseConfig(objective="infonce", batch_size=args.b, cache_chunk=args.chunk)
    task = BiEncoderTask(model, None, None, {}, {}, cfg, seed=0, device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    warm = batch(min(args.b, 4))
    loss, _ = task.loss(warm)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    data = batch(args.b)
    torch.manual_seed(0)
    before = _status_kb("VmRSS")
    exact = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    loss, _ = task.loss(data)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kb("VmHWM")  # without the reset: the process's peak so far (an upper bound)
    return {"b": args.b, "chunk": args.chunk, "loss": float(loss.detach()), "rss_before_mb": before / 1024,
            "peak_mb": peak / 1024, "step_mb": (peak - before) / 1024, "seconds": seconds, "cpu_seconds": cpu,
            "exact_peak": exact}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 512])
    ap.add_argument("--chunk", type=int, default=32, help="GradCache chunk (rows per encoder pass)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--query-max-length", type=int, default=16)
    ap.add_argument("--passage-max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared machine, more threads mostly measure spin-waiting)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--b", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.chunk = args.chunk or None
        print(json.dumps(one(args)))
        return
    import torch

    log(f"# bench_gradcache  {time.strftime('%Y-%m-%d %H:%M')}  torch={torch.__version__}  "
        f"threads={args.threads}  load={cpu_load():.1f}  model: BERT {args.layers}x{args.hidden}, queries {args.query_max_length} "
        f"tokens, passages {args.passage_max_length} tokens, objective infonce")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny-bert", args.layers, args.hidden)
        for b in args.sizes:
            for chunk in (None, args.chunk):
                cmd = [sys.executable, __file__, "--one", "--b", str(b), "--chunk", str(chunk or 0),
                       "--model", str(model), "--threads", str(args.threads),
                       "--query-max-length", str(args.query_max_length),
                       "--passage-max-length", str(args.passage_max_length)]
                env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    log(r.stderr[-3000:])
                    raise SystemExit(f"configuration b={b} chunk={chunk} failed")
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
                x = rows[-1]
                log(f"b={b:4d} chunk={str(chunk):>4s}  step peak +{x['step_mb']:8.1f} MB  "
                    f"(RSS before {x['rss_before_mb']:.0f} MB)  loss {x['loss']:.6f}  {x['seconds']:.2f} s "
                    f"(CPU {x['cpu_seconds']:.2f} s)")
    log("\n| batch | GradCache chunk | peak memory of the step (MB above RSS before it) "
        "| step wall / CPU time (s) |")
    log("|---|---|---|---|")
    for x in rows:
        log(f"| {x['b']} | {x['chunk'] or '—'} | {x['step_mb']:.0f} "
            f"| {x['seconds']:.1f} / {x['cpu_seconds']:.1f} |")
    if not all(x["exact_peak"] for x in rows):
        log("WARNING: /proc/self/clear_refs not writable: peaks are the processes' lifetime peaks")


if __name__ == "__main__":
    main()
