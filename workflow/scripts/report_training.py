"""Snakemake ``script:`` of rule report_training: loss and validation curves, teacher margins and
query-cluster sizes of every model the experiment trains (drawn by :mod:`irflow.report`)."""

import logging
import sys

from irflow.report import FIGURES, load

sm = snakemake  # noqa: F821  (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
try:
    ev = load(sm.params.evaluation, sm.wildcards.experiment, sm.params.benchmarks)
    for name in ("training", "margins", "clusters"):
        with open(sm.output[name], "wb") as f:
            f.write(FIGURES[name](ev))
except Exception:
    logging.exception("report_training failed")
    sys.exit(1)
