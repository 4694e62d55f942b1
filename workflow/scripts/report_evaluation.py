"""Snakemake ``script:`` of rule report_evaluation: the results table and the evaluation's figures.

The drawing lives in :mod:`irflow.report`, which ``irflow report`` shares, so the Snakemake report
and the stand-alone page show the same figures.
"""

import logging
import sys

from irflow.report import FIGURES, fragment, load

sm = snakemake  # noqa: F821  (injected by Snakemake)
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
try:
    ev = load(sm.params.evaluation, sm.wildcards.experiment, sm.params.benchmarks)
    with open(sm.output.table, "w") as f:
        f.write(fragment(ev))
    for name in ("perquery", "recall", "resources"):
        with open(sm.output[name], "wb") as f:
            f.write(FIGURES[name](ev))
except Exception:
    logging.exception("report_evaluation failed")
    sys.exit(1)
