"""The report: Snakemake's (``snakemake --report``) and ``irflow report``'s page, rendered in headless Chromium.

One tiny experiment with every kind of figure (BM25; a re-ranker trained one stage, whose scores
are the teacher of a dense retriever trained with TAS-Balanced sampling over query clusters) runs
through the real workflow. The page must load in Chromium with no console message and every
figure decoded; a page with one corrupted figure must be caught. Screenshots are kept under
``results/report-test/`` of the repository (CI keeps them as artifacts).

Chromium: Debian's ``chromium`` (``.ci/run`` installs it). Without it the test is skipped, unless
``IRFLOW_REQUIRE_BROWSER=1`` (set by CI), where a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT, irflow

from irflow.report import EVAL_FIGURES, TRAIN_FIGURES

SHOTS = ROOT / "results" / "report-test"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]
#: Snakemake's own report page loads Tailwind's play script, which warns once; nothing else may log
SNAKEMAKE_OWN = ("cdn.tailwindcss.com should not be used in production",)


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("IRFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail("no chromium on PATH, and IRFLOW_REQUIRE_BROWSER=1")
    pytest.skip("no chromium on PATH (apt-get install chromium)")


def chromium(page: Path, *args: str) -> tuple[str, list[str]]:
    """Run headless Chromium on ``page`` with a fresh profile; stdout and the page's console lines."""
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([browser(), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                            *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def render(page: Path, png: Path, height: int = 4000, wait_ms: int = 0) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, its console messages, and a screenshot ``png``."""
    budget = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    dom, console = chromium(page, *budget, "--dump-dom")
    png.parent.mkdir(parents=True, exist_ok=True)
    _, console2 = chromium(page, *budget, f"--window-size=1200,{height}", f"--screenshot={png}")
    assert png.is_file() and png.stat().st_size > 10_000, png
    return dom, console + console2


def report_config(tiny_bert) -> dict:
    small = {"batch_size": 4, "max_steps": 4, "lr": 1e-3}
    return {"experiments": {"tiny-report": {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "bm25",
        "split": {"seed": 1, "test": 10, "valid": 4},
        "systems": {
            "bm25": {"type": "bm25"},
            "dense": {"type": "dense", "model": str(tiny_bert), "doc_max_length": 64, "training": {
                "first_stage": "bm25", "depth": 30, "min_grade": 2, "teacher": "rerank",
                "clusters": {"k": 4}, "query_max_length": 16, "passage_max_length": 48,
                "stages": [{"objective": "margin-mse", "sampler": "tas-balanced", "validate_every": 2, **small}]}},
            "rerank": {"type": "rerank", "first_stage": "bm25", "depth": 20, "model": str(tiny_bert),
                       "max_length": 64, "training": {"first_stage": "bm25", "depth": 30, "min_grade": 2},
                       "stages": [{"objective": "lce", "batch_queries": 2, "group_size": 4, "max_steps": 4,
                                   "validate_every": 2}]},
        },
    }}}


def test_report_renders_in_headless_chromium(workflow, env, tiny_bert):
    browser()  # skip before the workflow runs when there is no browser
    workflow.write_config(report_config(tiny_bert))
    target = "results/tiny-report/ndcg.tsv"
    workflow.snakemake(target)
    figs = workflow.path / "results" / "tiny-report" / "report"
    names = {"results.html"} | {f"{n}.png" for n in {**EVAL_FIGURES, **TRAIN_FIGURES}}
    assert {p.name for p in figs.iterdir()} == names

    # Snakemake's report of the experiment's result holds every figure, under the experiment's category
    workflow.snakemake("--report", "report.html", target)
    sm_page = workflow.path / "report.html"
    text = sm_page.read_text()
    for n in names:
        assert n in text, n
    assert "tiny-report" in text
    _, console = render(sm_page, SHOTS / "snakemake-report.png", 1000, wait_ms=5000)
    assert not [c for c in console if not any(own in c for own in SNAKEMAKE_OWN)], console
    shutil.copy(sm_page, SHOTS / "snakemake-report.html")

    # irflow report: the same figures in one page, without Snakemake
    out = irflow(["report", "tiny-report"], env, workflow.path).stdout.strip()
    page = workflow.path / out
    assert page == workflow.path / "results" / "tiny-report" / "report" / "index.html"
    html = page.read_text()
    assert html.count("<figure") == 6
    for title in ("dense", "rerank", "p_value", "pairs drawn per margin bin"):
        assert title in html, title
    # TAS-Balanced's draws per margin bin, recorded by the trainer: every pair of every step
    tasb = [json.loads(m.read_text()) for m in (workflow.path / "results" / "store" / "train").glob("*/manifest.json")]
    tasb = [m["stats"] for m in tasb if m["stats"].get("sampler", {}).get("sampler") == "tas-balanced"]
    assert len(tasb) == 1 and sum(tasb[0]["sampler"]["sampled_bins"]) == tasb[0]["steps"] * 4, tasb
    dom, console = render(page, SHOTS / "irflow-report.png")
    assert console == [], console
    assert 'data-figures="6 0"' in dom, re.findall(r"data-figures=\"[^\"]*\"", dom)
    shutil.copy(page, SHOTS / "irflow-report.html")

    # the check can fail: one figure's bytes corrupted -> a console error and one broken figure
    broken = workflow.path / "broken.html"
    broken.write_text(re.sub(r"(<figure id='recall'><img alt='[^']*' src='data:image/png;base64,)[^']{40}",
                             r"\1" + "A" * 40, html, count=1))
    assert broken.read_text() != html
    dom, console = render(broken, workflow.path / "broken.png")
    assert 'data-figures="6 1"' in dom
    assert any("figure did not load: Recall@k" in c for c in console), console


def test_irflow_report_bad_target(workflow, env):
    workflow.write_config({"experiments": {"x": {"corpus": "synthetic:tiny", "queries": "synthetic:tiny",
                                                 "systems": {"bm25": {"type": "bm25"}}}}})
    r = irflow(["report", "nope"], env, workflow.path, check=False)
    assert r.returncode == 2 and r.stderr.startswith("irflow report: error: nope: neither"), r.stderr
    r = irflow(["report", "x"], env, workflow.path, check=False)
    assert r.returncode == 2 and "not evaluated yet" in r.stderr, r.stderr
    (workflow.path / "notes").mkdir()
    r = irflow(["report", "notes"], env, workflow.path, check=False)
    assert r.returncode == 2 and "no manifest" in r.stderr, r.stderr
