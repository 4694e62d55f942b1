"""Figures and one self-contained HTML page for an experiment's evaluation artifact.

Shared by the workflow's report scripts (``workflow/scripts/report_*.py``, run by Snakemake
``script:`` rules whose outputs ``snakemake --report`` collects) and by ``irflow report``, which
writes the same figures into one HTML page without Snakemake. Everything is read from the store:
the evaluation artifact names its runs, and every artifact's manifest names its inputs, so walking
the manifests upward finds each system's training runs (``train_log.jsonl``), teacher scores
(``teacher.parquet``) and query clusters (``clusters.parquet``) without the config.

Plotting library: **matplotlib** (Agg backend). It is the most widely kept Python plotting
library, renders static PNGs with no browser, no JavaScript and no network (so the page is
self-contained and the Snakemake report embeds the files as they are), installs as a wheel on
every platform, and imports in about a second, which matters for a rule that runs after every
evaluation. Interactive libraries (plotly, bokeh, altair) would embed megabytes of JavaScript per
figure or need a CDN.

What is not recorded is said on the page rather than drawn from guesses: TAS-Balanced's sampled
bin frequencies are not logged by the trainer; steps without a ``benchmark:`` file (Snakemake
records time and peak memory only for the rules that declare one) show the manifest's wall time
and no memory.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IrflowError
from .store import MANIFEST, read_manifest

#: the figures of the evaluation part and of the training part (file stem -> title)
EVAL_FIGURES = {"perquery": "Per-query nDCG@10 against the baseline",
                "recall": "Recall@k, k = 1..1000",
                "resources": "Time and peak memory per step"}
TRAIN_FIGURES = {"training": "Training loss and validation nDCG per step",
                 "margins": "Teacher margins (positive minus negative score)",
                 "clusters": "Query-cluster sizes and TAS-Balanced's sampled margin bins"}
TRAINING_STEPS = ("train", "score", "cluster")
MAX_K = 1000


@dataclass
class Upstream:
    """One artifact the evaluation depends on, and the systems whose run reaches it."""

    step: str
    key: str
    path: Path
    manifest: dict
    systems: list[str] = field(default_factory=list)

    def param(self, name: str):
        """A parameter of the manifest, top level or one level down (train nests ``dense``, ``group``)."""
        p = self.manifest.get("params", {})
        if name in p:
            return p[name]
        return next((v[name] for v in p.values() if isinstance(v, dict) and name in v), None)

    @property
    def label(self) -> str:
        what = " ".join(str(v) for k in ("family", "objective", "sampler") if isinstance(v := self.param(k), str))
        return f"{self.step} {self.key[:8]}" + (f" ({what})" if what else "")


@dataclass
class Evaluation:
    """What the report shows of one evaluation artifact."""

    path: Path
    manifest: dict
    name: str
    systems: list[str]
    baseline: str | None
    runs: dict[str, Path]
    ndcg: list[dict[str, str]]
    perquery: dict[str, dict[str, float]]  # system -> query -> nDCG@10
    upstream: list[Upstream]
    benchmarks: Path

    def of_step(self, step: str) -> list[Upstream]:
        return [u for u in self.upstream if u.step == step]

    @property
    def trains(self) -> bool:
        return any(u.step in TRAINING_STEPS for u in self.upstream)


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load(eval_dir: str | Path, name: str | None = None, benchmarks: str | Path = "benchmarks") -> Evaluation:
    """Read an evaluation artifact and walk its inputs' manifests up to the sources."""
    eval_dir = Path(eval_dir)
    m = read_manifest(eval_dir)
    if m.get("step") != "evaluate":
        raise IrflowError(f"not an evaluation artifact (step {m.get('step')!r})", where=eval_dir)
    store = eval_dir.parent.parent
    runs = {n.split(":", 1)[1]: store / Path(i["path"]).parent.name / i["key"]
            for n, i in m.get("inputs", {}).items() if n.startswith("run:")}
    systems = list(m["params"].get("systems") or runs)
    perquery: dict[str, dict[str, float]] = {s: {} for s in systems}
    for row in _tsv(eval_dir / "perquery.tsv"):
        if row["measure"] == "nDCG@10":
            perquery.setdefault(row["system"], {})[row["query_id"]] = float(row["value"])
    found: dict[tuple[str, str], Upstream] = {}
    for system, run in runs.items():
        stack = [run]
        while stack:
            p = stack.pop()
            try:
                pm = read_manifest(p)
            except IrflowError:
                continue  # an input removed since (gc, by hand): the page says less, not nothing
            u = found.setdefault((pm["step"], pm["key"]), Upstream(pm["step"], pm["key"], p, pm))
            if system in u.systems:
                continue
            u.systems.append(system)
            stack += [store / Path(i["path"]).parent.name / i["key"] for i in pm.get("inputs", {}).values()]
    found[("evaluate", m["key"])] = Upstream("evaluate", m["key"], eval_dir, m, list(systems))
    return Evaluation(eval_dir, m, name or f"evaluation {m['key']}", systems, m["params"].get("baseline"), runs,
                      _tsv(eval_dir / "ndcg.tsv"), perquery, list(found.values()), Path(benchmarks))


# ------------------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _empty(plt, text: str) -> bytes:
    """A small figure that says why there is nothing to draw (the page never has a broken image)."""
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return _png(fig)


def perquery_figure(ev: Evaluation) -> bytes:
    """Sorted bars of nDCG@10(system) - nDCG@10(baseline) per query, one panel per system."""
    plt = _plt()
    others = [s for s in ev.systems if s != ev.baseline]
    if not ev.baseline or not others:
        return _empty(plt, "one system only: no baseline to compare with")
    base = ev.perquery[ev.baseline]
    fig, axes = plt.subplots(len(others), 1, figsize=(8, 1.9 * len(others)), squeeze=False, sharex=True)
    for ax, s in zip(axes[:, 0], others):
        d = sorted(ev.perquery[s][q] - base[q] for q in base)
        colors = ["#2a9d8f" if x > 0 else "#e76f51" if x < 0 else "#999999" for x in d]
        ax.bar(range(len(d)), d, width=1.0, color=colors)
        wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
        ax.set_title(f"{s} − {ev.baseline}: {wins} wins, {losses} losses, {len(d) - wins - losses} ties "
                     f"(mean {sum(d) / max(len(d), 1):+.4f})", fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("Δ nDCG@10")
    axes[-1, 0].set_xlabel("queries, sorted by difference")
    fig.tight_layout()
    return _png(fig)


def _qrels_spec(m: dict) -> str | None:
    """The ``--qrels`` the evaluation ran with (its command line; the key holds only its identity)."""
    cmd = m.get("command") or []
    for i, a in enumerate(cmd[:-1]):
        if a == "--qrels":
            return cmd[i + 1]
        if isinstance(a, str) and a.startswith("--qrels="):
            return a.split("=", 1)[1]
    return None


def _rel_level(measures: list[str]) -> int:
    """The relevance level of the evaluation's recall measure (``R(rel=2)@1000`` -> 2), else 1."""
    for ms in measures:
        if ms.startswith("R(") or ms.startswith("R@"):
            hit = re.search(r"rel=(\d+)", ms)
            return int(hit.group(1)) if hit else 1
    return 1


def recall_curves(ev: Evaluation) -> tuple[dict[str, list[float]], int, int] | str:
    """Mean recall@k for k = 1..1000 per system (queries with a relevant document), or why not."""
    from .data.sources import iter_qrels
    from .prepare import load_ids
    from .search import RUN
    from .trec import read_run

    spec = _qrels_spec(ev.manifest)
    if spec is None:
        return "the evaluation's command line does not name its qrels"
    level = _rel_level(ev.manifest["params"].get("measures", []))
    qinput = ev.manifest.get("inputs", {}).get("queries")
    qids = set(load_ids(ev.path.parent.parent / "prepare" / qinput["key"])) if qinput else None
    relevant: dict[str, set[str]] = {}
    for q, d, r in iter_qrels(spec):
        if r >= level and (qids is None or q in qids):
            relevant.setdefault(q, set()).add(d)
    if not relevant:
        return f"no query has a document of relevance >= {level}"
    curves = {}
    for s in ev.systems:
        run, _ = read_run(ev.runs[s] / RUN)
        hits = [0.0] * (MAX_K + 1)  # hits[k]: sum over queries of the share of relevant found at rank k
        for q, rel in relevant.items():
            for rank, (d, _score) in enumerate(run.get(q, [])[:MAX_K], start=1):
                if d in rel:
                    hits[rank] += 1.0 / len(rel)
        acc, curve = 0.0, []
        for k in range(1, MAX_K + 1):
            acc += hits[k]
            curve.append(acc / len(relevant))
        curves[s] = curve
    return curves, level, len(relevant)


def recall_figure(ev: Evaluation) -> bytes:
    plt = _plt()
    got = recall_curves(ev)
    if isinstance(got, str):
        return _empty(plt, f"recall curves not drawn: {got}")
    curves, level, n = got
    fig, ax = plt.subplots(figsize=(8, 4))
    ks = list(range(1, MAX_K + 1))
    for s, c in curves.items():
        ax.plot(ks, c, label=f"{s} (R@10 {c[9]:.3f}, R@1000 {c[-1]:.3f})",
                linewidth=2.2 if s == ev.baseline else 1.4)
    ax.set_xscale("log")
    ax.set_xlim(1, MAX_K)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (log scale)")
    ax.set_ylabel(f"mean recall@k (rel ≥ {level})")
    ax.set_title(f"{n} evaluation queries with a relevant document", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _train_log(u: Upstream) -> list[dict]:
    p = u.path / "train_log.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def training_figure(ev: Evaluation) -> bytes:
    """Loss (left) and validation nDCG (right) per step, one row per trained model."""
    plt = _plt()
    trains = sorted((u for u in ev.of_step("train") if _train_log(u)), key=lambda u: u.manifest.get("created", ""))
    if not trains:
        return _empty(plt, "no trained model in this experiment")
    fig, axes = plt.subplots(len(trains), 2, figsize=(9, 2.3 * len(trains)), squeeze=False)
    for (a, b), u in zip(axes, trains):
        rows = _train_log(u)
        losses = [r for r in rows if "loss" in r]  # step 0 holds only the starting model's validation
        a.plot([r["step"] for r in losses], [r["loss"] for r in losses], color="#264653",
               marker="." if len(losses) > 20 else "o")
        # wrapped: a model shared by many systems (an ablation's teachers) would run into the next panel
        a.set_title(textwrap.fill(f"{u.label}: loss (used by {', '.join(u.systems)})", 60,
                                  break_on_hyphens=False), fontsize=8)
        a.set_xlabel("step")
        val = [r for r in rows if r.get("validation") is not None]
        if val:
            b.plot([r["step"] for r in val], [r["validation"] for r in val], marker="o", color="#e9c46a")
            best = max(val, key=lambda r: r["validation"])
            b.set_title(f"validation nDCG (best {best['validation']:.4f} at step {best['step']})", fontsize=8)
        else:
            b.text(0.5, 0.5, "no validation (validate_every = 0)", ha="center", va="center",
                   transform=b.transAxes)
            b.set_title("validation nDCG", fontsize=8)
        b.set_xlabel("step")
    fig.tight_layout()
    return _png(fig)


def teacher_margins(u: Upstream) -> list[float]:
    """``s(q, positive) - s(q, negative)`` over the scored pairs of a score artifact's examples."""
    import pyarrow.parquet as pq

    from .preprocess import EXAMPLES

    t = pq.read_table(u.path / "teacher.parquet").to_pydict()
    scores = {(q, d): s for q, d, s in zip(t["qid"], t["doc_id"], t["score"])}
    ex = u.manifest.get("inputs", {}).get("examples")
    if ex is None:
        return []
    rows = pq.read_table(u.path.parent.parent / "preprocess" / ex["key"] / EXAMPLES,
                         columns=["qid", "positives", "negatives"]).to_pylist()
    out = []
    for r in rows:
        q = r["qid"]
        pos = [scores[(q, d)] for d in r["positives"] if (q, d) in scores]
        neg = [scores[(q, d)] for d in r["negatives"] if (q, d) in scores]
        out += [p - n for p in pos for n in neg]
    return out


def margins_figure(ev: Evaluation) -> bytes:
    plt = _plt()
    scores = ev.of_step("score")
    if not scores:
        return _empty(plt, "no teacher scores in this experiment")
    fig, axes = plt.subplots(1, len(scores), figsize=(4.5 * len(scores), 3), squeeze=False)
    for ax, u in zip(axes[0], scores):
        m = teacher_margins(u)
        if m:
            ax.hist(m, bins=50, color="#457b9d")
            ax.axvline(0, color="black", linewidth=0.6)
            share = sum(x > 0 for x in m) / len(m)
        else:
            share = float("nan")
        ax.set_title(f"{u.label}: {len(m)} pairs, {share:.0%} positive ahead", fontsize=8)
        ax.set_xlabel("teacher margin")
    fig.tight_layout()
    return _png(fig)


def cluster_sizes(u: Upstream) -> list[int]:
    import pyarrow.parquet as pq

    from .cluster import CLUSTERS

    t = pq.read_table(u.path / CLUSTERS, columns=["cluster"]).column("cluster").to_pylist()
    k = u.manifest.get("params", {}).get("k")
    n = max(int(k) if isinstance(k, int) else 0, max(t, default=-1) + 1)
    sizes = [0] * n
    for c in t:
        sizes[c] += 1
    return sorted(sizes, reverse=True)


def sampled_bins(ev: Evaluation) -> list[tuple[Upstream, list[int]]]:
    """TAS-Balanced trainings and how often they drew from each margin bin (their manifests' stats)."""
    out = []
    for u in ev.of_step("train"):
        sampler = (u.manifest.get("stats") or {}).get("sampler")
        freq = sampler.get("sampled_bins") if isinstance(sampler, dict) else None
        if u.param("sampler") == "tas-balanced" and isinstance(freq, list) and freq:
            out.append((u, [int(x) for x in freq]))
    return out


def clusters_figure(ev: Evaluation) -> bytes:
    plt = _plt()
    cl, bins = ev.of_step("cluster"), sampled_bins(ev)
    if not cl and not bins:
        return _empty(plt, "no query clusters in this experiment (no topic-aware sampling)")
    n = len(cl) + len(bins)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3), squeeze=False)
    for ax, u in zip(axes[0], cl):
        sizes = cluster_sizes(u)
        ax.bar(range(len(sizes)), sizes, color="#8ab17d")
        ax.set_title(f"{u.label}: {sum(sizes)} queries in {len(sizes)} clusters "
                     f"({sum(s == 0 for s in sizes)} empty)", fontsize=8)
        ax.set_xlabel("clusters, largest first")
        ax.set_ylabel("training queries")
    for ax, (u, freq) in zip(axes[0][len(cl):], bins):
        ax.bar(range(len(freq)), freq, color="#e9c46a")
        ax.set_title(f"{u.label}: {sum(freq)} pairs drawn over {len(freq)} margin bins", fontsize=8)
        ax.set_xlabel("margin bin (0 = smallest teacher margins)")
        ax.set_ylabel("pairs drawn")
    fig.tight_layout()
    return _png(fig)


def resources(ev: Evaluation) -> list[dict]:
    """Per upstream step: seconds and peak RSS (MB) from its benchmark file, else the manifest's time."""
    out = []
    for u in ev.upstream:
        b = ev.benchmarks / u.step / f"{u.key}.tsv"
        row = {"step": u.step, "key": u.key, "label": f"{u.step} {u.key[:8]}", "source": "manifest",
               "s": u.manifest.get("wall_time_s"), "max_rss": None}
        if b.is_file():
            try:
                rec = _tsv(b)[-1]
                row.update(source="benchmark", s=float(rec["s"]))
                rss = rec.get("max_rss")
                row["max_rss"] = float(rss) if rss not in (None, "", "-", "NA") else None
            except (IndexError, KeyError, ValueError):
                pass
        if isinstance(row["s"], (int, float)) and not math.isnan(row["s"]):
            out.append(row)
    return sorted(out, key=lambda r: -r["s"])


def resources_figure(ev: Evaluation) -> bytes:
    plt = _plt()
    rows = resources(ev)
    if not rows:
        return _empty(plt, "no step times recorded")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 0.28 * len(rows) + 1.2), sharey=True)
    y = list(range(len(rows)))
    a.barh(y, [r["s"] for r in rows], color=["#264653" if r["source"] == "benchmark" else "#a8dadc" for r in rows])
    a.set_yticks(y, [r["label"] for r in rows], fontsize=7)
    a.invert_yaxis()
    a.set_xlabel("seconds (dark: benchmark file; light: manifest wall time)")
    b.barh(y, [r["max_rss"] or 0 for r in rows], color="#e76f51")
    b.set_xlabel("peak RSS, MB (benchmark files only)")
    fig.tight_layout()
    return _png(fig)


FIGURES = {"perquery": perquery_figure, "recall": recall_figure, "resources": resources_figure,
           "training": training_figure, "margins": margins_figure, "clusters": clusters_figure}


# ------------------------------------------------------------------------------------ workflow


def trains(plan, experiment: str) -> bool:
    """Whether the plan's evaluation of ``experiment`` reaches a train, score or cluster node."""
    stack, seen = [plan.experiments[experiment]], set()
    while stack:
        n = stack.pop()
        if id(n) not in seen:
            seen.add(id(n))
            if n.step in TRAINING_STEPS:
                return True
            stack.extend(n.inputs.values())
    return False


def report_files(plan, experiment: str) -> list[str]:
    """The files of ``rules/report.smk`` for an experiment: the evaluation's, plus the training's
    where it trains (an experiment without training gets no empty training figures)."""
    d = f"results/{experiment}/report"
    names = ["results.html"] + [f"{n}.png" for n in EVAL_FIGURES]
    if trains(plan, experiment):
        names += [f"{n}.png" for n in TRAIN_FIGURES]
    return [f"{d}/{n}" for n in names]


# --------------------------------------------------------------------------------------- html


def results_table(ev: Evaluation) -> str:
    """The results table (means and p-values against the baseline) as an HTML fragment."""
    if not ev.ndcg:
        return "<p>no results</p>"
    cols = list(ev.ndcg[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols) + "</tr>" for r in ev.ndcg)
    return (f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p class='note'>p_value: paired two-sided t-test of nDCG@10 against the baseline "
            f"<b>{html.escape(str(ev.baseline))}</b> over the same queries. Evaluation artifact "
            f"<code>{html.escape(str(ev.path))}</code>.</p>")


def sampler_note(ev: Evaluation) -> str:
    """TAS-Balanced's sampled bin frequencies, in numbers (the cluster figure plots them)."""
    tasb = [u for u in ev.of_step("train") if u.param("sampler") == "tas-balanced"]
    if not tasb:
        return "<p class='note'>No TAS-Balanced training in this experiment.</p>"
    recorded = {id(u): freq for u, freq in sampled_bins(ev)}
    items = []
    for u in tasb:
        freq = recorded.get(id(u))
        if freq:
            items.append(f"<li>{html.escape(u.label)}: pairs drawn per margin bin (smallest margins first) "
                         f"{html.escape(json.dumps(freq))}</li>")
        else:
            items.append(f"<li>{html.escape(u.label)}: sampled bin frequencies <b>not recorded</b> (trained "
                         "before irflow recorded them)</li>")
    return "<ul class='note'>" + "".join(items) + "</ul>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table.results{border-collapse:collapse;font-size:.9em}
table.results td,table.results th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
table.results td:first-child,table.results th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.note{font-size:.85em;color:#555}
"""

# Marks every figure that failed to load and says so on the console, so a browser test sees it.
_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('figure img'));
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-figures', imgs.length + ' ' + bad.length);
  bad.forEach(function (i) { console.error('figure did not load: ' + i.alt); });
});
"""


def figures(ev: Evaluation) -> dict[str, bytes]:
    names = list(EVAL_FIGURES) + (list(TRAIN_FIGURES) if ev.trains else [])
    return {n: FIGURES[n](ev) for n in names}


def page(sections: list[tuple[Evaluation, dict[str, bytes]]], title: str = "irflow report") -> str:
    """One HTML page, the figures embedded as data URIs (no file beside it, no network)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style><script>{_CHECK}</script></head><body><h1>{html.escape(title)}</h1>"]
    titles = {**EVAL_FIGURES, **TRAIN_FIGURES}
    for ev, figs in sections:
        parts.append(f"<h2>{html.escape(ev.name)}</h2>{results_table(ev)}")
        for n, png in figs.items():
            data = base64.b64encode(png).decode()
            parts.append(f"<figure id='{n}'><img alt='{html.escape(titles[n])}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(titles[n])}</figcaption></figure>")
        if ev.trains:
            parts.append(f"<h3>TAS-Balanced sampling</h3>{sampler_note(ev)}")
    parts.append("</body></html>")
    return "".join(parts)


def fragment(ev: Evaluation) -> str:
    """The results table and the sampler note as a small HTML file for Snakemake's report."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            f"<h2>{html.escape(ev.name)}</h2>{results_table(ev)}"
            + (f"<h3>TAS-Balanced sampling</h3>{sampler_note(ev)}" if ev.trains else "") + "</body></html>")


def write_page(eval_dirs: dict[str, Path], out: str | Path, benchmarks: str | Path = "benchmarks") -> Path:
    """``irflow report``: every named evaluation's table and figures into one HTML file."""
    sections = []
    for name, d in eval_dirs.items():
        ev = load(d, name, benchmarks)
        sections.append((ev, figures(ev)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = "irflow report: " + ", ".join(eval_dirs)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page(sections, title))
    tmp.replace(out)
    return out


__all__ = ["EVAL_FIGURES", "FIGURES", "TRAIN_FIGURES", "Evaluation", "figures", "fragment", "load", "page",
           "write_page", "MANIFEST"]
