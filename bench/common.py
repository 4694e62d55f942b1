"""What every benchmark script does the same way: logging, the load average, the run header."""

from __future__ import annotations

import os
import time


def log(msg: str = "") -> None:
    print(msg, flush=True)


def cpu_load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def start_torch(threads: int, irds_home: str | None = None):
    """Set the environment before torch is imported, then import it with ``threads`` threads."""
    if irds_home:
        os.environ["IR_DATASETS_HOME"] = irds_home
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import torch

    torch.set_num_threads(threads)
    return torch


def header(name: str, threads: int, fair: str) -> float:
    """Log the versions and the machine, warn when other processes hold the cores; the load average.

    ``fair`` says what keeps the comparison fair when the cores are shared (it is in the warning).
    """
    import sentence_transformers
    import torch
    import transformers

    log(f"# {name}  {time.strftime('%Y-%m-%d %H:%M')}  cores={os.cpu_count()} threads={threads}  "
        f"cpu={torch.backends.cpu.get_cpu_capability()}  torch={torch.__version__}  "
        f"transformers={transformers.__version__}  sentence-transformers={sentence_transformers.__version__}")
    load = cpu_load()
    if load > threads + 0.5:
        log(f"WARNING: load average {load:.1f} > {threads} threads: other processes compete for the "
            f"cores; timings will be noisy ({fair} keeps the ratio fair, not the absolute numbers)")
    return load


def add_attention_dropout_args(ap) -> None:
    """The training benchmarks' attention-dropout options: irflow's stage setting, and the same
    applied to sentence-transformers' model for a like-for-like comparison."""
    ap.add_argument("--attention-dropout", type=float, default=None,
                    help="irflow's attention_dropout training setting (default: the model's own, 0.1)")
    ap.add_argument("--st-attention-dropout", type=float, default=None,
                    help="the same setting applied to sentence-transformers' model (default: the model's own)")


def dropout_label(x) -> str:
    return "the model's (0.1)" if x is None else f"{x:g}"
