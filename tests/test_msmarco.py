"""The dl19/dl20 experiments on a tiny offline MS MARCO, read by the real ``ir_datasets``.

``ir_datasets`` serves MS MARCO from ``$IR_DATASETS_HOME/msmarco-passage`` without a download when
the files it would have extracted are there (``ir_datasets/datasets/msmarco_passage.py``):

* ``collection.tsv`` (``pid<TAB>passage``) and ``irds_version.txt`` containing exactly ``v2`` with
  no newline (otherwise its migrator deletes the collection on first use);
* ``trec-dl-2019/queries.tsv`` (a cache of the gzipped download) and ``trec-dl-2019/qrels``;
* ``trec-dl-2020/queries.tsv.gz`` (read through gzip on every use) and ``trec-dl-2020/qrels``;
* ``train/queries.tsv`` and ``train/qrels`` for ``train/judged`` (the dl19 ``tas-balanced``
  system's training queries).

The collection is written so that lexical and semantic matching both work: 20 topics of 10
passages each; a query asks about one topic and its passages are judged 0-3. Some judged passages
are deliberately absent from the collection, as in any subset of MS MARCO: evaluation and
preprocessing must drop them, not crash.
"""

from __future__ import annotations

import copy
import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Workflow, irflow

TOPICS = [
    ("coffee", "brewing espresso beans roast caffeine grinder"),
    ("volcano", "lava eruption magma crater ash tectonic"),
    ("piano", "keys chords pianist sonata hammers strings"),
    ("glacier", "ice melting snow alpine retreat moraine"),
    ("vaccine", "immune antibodies dose virus injection immunity"),
    ("bitcoin", "blockchain mining wallet cryptocurrency ledger miners"),
    ("tomato", "garden plants seedlings fruit soil watering"),
    ("marathon", "runners race miles training endurance pace"),
    ("photosynthesis", "chlorophyll sunlight leaves carbon oxygen glucose"),
    ("mortgage", "loan interest bank payment house lender"),
    ("earthquake", "seismic fault richter shaking aftershock waves"),
    ("penguin", "antarctic birds colony flightless swim krill"),
    ("diabetes", "insulin blood sugar glucose pancreas diet"),
    ("telescope", "lens mirror astronomy stars observatory galaxies"),
    ("bread", "dough yeast flour oven baking loaf"),
    ("hurricane", "storm wind ocean category landfall rainfall"),
    ("chess", "board pawns king queen checkmate opening"),
    ("passport", "travel visa application renewal embassy document"),
    ("cholesterol", "heart arteries fat blood levels statins"),
    ("solar", "panels energy electricity photovoltaic roof inverter"),
]
FILLER = "the a of and to in is it that for on with as was at by".split()
PER_TOPIC = 10
# query ids by set: dl19 topics 0-4, dl20 topics 5-9, train topics 10-19
SETS = {"trec-dl-2019": range(0, 5), "trec-dl-2020": range(5, 10), "train": range(10, 20)}
QID_BASE = {"trec-dl-2019": 19000, "trec-dl-2020": 20000, "train": 100}


def pid(topic: int, j: int) -> str:
    return str(1_000_000 + topic * 100 + j)


def passage(topic: int, j: int) -> str:
    name, words = TOPICS[topic]
    w = words.split()
    body = [w[(j + k) % len(w)] for k in range(4 + j % 3)]
    filler = [FILLER[(topic * 7 + j * 3 + k) % len(FILLER)] for k in range(6)]
    mixed = [x for pair in zip(filler, body) for x in pair] + body[len(filler):]
    lead = f"{name} " if j < 6 else ""  # passages 6..9 are on topic without naming it
    return f"{lead}{' '.join(mixed)} passage {j}."


def grade(j: int) -> int:
    return 3 if j < 2 else 2 if j < 4 else 1 if j < 6 else 0


def build_msmarco(home: Path) -> dict:
    """Write the tiny MS MARCO under ``home/msmarco-passage``; return what was written."""
    base = home / "msmarco-passage"
    for sub in ("trec-dl-2019", "trec-dl-2020", "train"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    with open(base / "collection.tsv", "w", encoding="utf-8") as f:
        for t in range(len(TOPICS)):
            for j in range(PER_TOPIC):
                f.write(f"{pid(t, j)}\t{passage(t, j)}\n")
    (base / "irds_version.txt").write_bytes(b"v2")
    written: dict = {"docs": len(TOPICS) * PER_TOPIC}
    for name, topics in SETS.items():
        queries, qrels = [], []
        for i, t in enumerate(topics):
            qid = str(QID_BASE[name] + i)
            topic, words = TOPICS[t]
            queries.append(f"{qid}\twhat is {topic} {words.split()[i % 6]}\n")
            for j in range(PER_TOPIC):
                rel = grade(j) if name != "train" else int(grade(j) >= 2)  # train qrels are binary
                if name == "train" and rel == 0:
                    continue  # MS MARCO train qrels list positives only
                qrels.append(f"{qid} {'Q0' if name != 'train' else '0'} {pid(t, j)} {rel}\n")
            # a judged passage that the collection (a subset) does not hold
            qrels.append(f"{qid} {'Q0' if name != 'train' else '0'} {9_000_000 + t} {2 if i % 2 else 0}\n")
        # an unjudged query: `judged` subsets must leave it out
        queries.append(f"{QID_BASE[name] + 99}\twhat is unjudged\n")
        text = "".join(queries).encode()
        if name == "trec-dl-2020":
            (base / name / "queries.tsv.gz").write_bytes(gzip.compress(text))
        else:
            (base / name / "queries.tsv").write_bytes(text)
        (base / name / "qrels").write_text("".join(qrels))
        written[name] = {"queries": len(topics), "qrels": len(qrels)}
    return written


@pytest.fixture()
def msmarco_env(env, tmp_path) -> tuple[dict, dict]:
    home = tmp_path / "irds_home"
    written = build_msmarco(home)
    return dict(env, IR_DATASETS_HOME=str(home), IR_DATASETS_DL_TRIES="1", IR_DATASETS_DL_TIMEOUT="5"), written


def _texts(artifact: Path) -> dict[str, str]:
    from irflow.prepare import load_texts

    ids, texts = load_texts(artifact)
    return dict(zip(ids, texts))


def test_tiny_msmarco_prepares_and_the_judged_queries_and_qrels_load(msmarco_env, tmp_path):
    env, written = msmarco_env
    store = tmp_path / "store"

    r = irflow(["prepare", "--dataset", "irds:msmarco-passage", "--kind", "docs", "--store", store], env, tmp_path)
    docs = _texts(Path(r.stdout.strip().splitlines()[-1]))
    assert len(docs) == written["docs"] == 200
    assert docs[pid(3, 0)] == passage(3, 0)

    # the corpus-only id has no queries: one line naming the id and what it lacks
    r = irflow(["prepare", "--dataset", "irds:msmarco-passage", "--kind", "queries", "--store", store], env,
               tmp_path, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("irflow prepare: error:")]
    assert len(errors) == 1 and "irds:msmarco-passage" in errors[0] and "no queries" in errors[0], r.stderr

    for name in ("trec-dl-2019", "trec-dl-2020", "train"):
        spec = f"irds:msmarco-passage/{name}/judged"
        r = irflow(["prepare", "--dataset", spec, "--kind", "queries", "--store", store], env, tmp_path)
        queries = _texts(Path(r.stdout.strip().splitlines()[-1]))
        expected = {str(QID_BASE[name] + i) for i in range(len(SETS[name]))}
        assert set(queries) == expected, name  # the unjudged query is left out
        assert queries[str(QID_BASE[name])].startswith(f"what is {TOPICS[SETS[name][0]][0]}")

    # ir_datasets fixes its home at import: read the qrels in a fresh process
    code = ("import collections, json, sys; from irflow.data.sources import iter_qrels; "
            "print(json.dumps({n: collections.Counter(g for _, _, g in iter_qrels(f'irds:msmarco-passage/{n}/judged'))"
            " for n in sys.argv[1:]}))")
    r = subprocess.run([sys.executable, "-c", code, "trec-dl-2019", "trec-dl-2020"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, check=True)
    grades = json.loads(r.stdout)
    for name in ("trec-dl-2019", "trec-dl-2020"):
        assert sum(grades[name].values()) == written[name]["qrels"], name
        assert set(grades[name]) == {"0", "1", "2", "3"}, name


# ------------------------------------------------------------------------- dl19/dl20 through Snakemake

MODEL = "all-MiniLM-L6-v2"  # packaged: resolves offline


def small_override() -> dict:
    """The dl19/dl20 experiments with every hub model replaced by the packaged MiniLM (cross-encoders
    included: the cosine head works on it) and every schedule shrunk to a few steps. Snakemake
    merges this ``--configfile`` into config/config.yaml deeply, but replaces lists (stages) whole."""
    stage = {"batch_size": 4, "lr": 1.0e-5, "max_steps": 2, "validate_every": 1, "patience": 1,
             "negatives_depth": 10}
    tasb = {
        "model": MODEL, "shards": 2, "query_max_length": 16, "doc_max_length": 32,
        "training": {
            "valid": 2, "depth": 20, "teacher": [MODEL], "teacher_max_length": 48,
            "clusters": {"k": 4}, "query_max_length": 16, "passage_max_length": 32,
            "colbert": {"model": MODEL, "stage": {"objective": "margin-mse", **stage}},
            "stages": [{"objective": "margin-mse", "sampler": "random", **stage},
                       {"objective": "dual", "sampler": "tas-balanced", "alpha": 0.75, **stage}],
        },
    }
    systems = {
        "dense": {"model": MODEL, "shards": 2, "doc_max_length": 32},
        "rerank": {"model": MODEL, "depth": 20, "max_length": 48},
        "tas-balanced": tasb,
    }
    exps = {name: {"systems": copy.deepcopy(systems)} for name in ("dl19", "dl20")}
    exps["msmarco-dl20"] = {"systems": small_msmarco_dl20(stage)}
    return {"experiments": exps}


def small_msmarco_dl20(stage: dict) -> dict:
    """msmarco-dl20 (offline, packaged MiniLM already) with its schedules shrunk and its clusters cut
    to the tiny collection's two training queries; everything else as shipped (negatives: both,
    min_grade, two-stage dense and re-ranker chains, the re-ranker's document_cls)."""
    small = {k: v for k, v in stage.items() if k != "batch_size"}
    return {
        "dense-zeroshot": {"doc_max_length": 32, "query_max_length": 16},
        "dense": {"doc_max_length": 32, "query_max_length": 16, "training": {
            "depth": 20, "clusters": {"k": 2}, "query_max_length": 16, "passage_max_length": 32,
            "validation_depth": 10,
            "colbert": {"model": MODEL, "stage": {"objective": "margin-mse", "batch_size": 4, **small}},
            "stages": [{"objective": "infonce", "sampler": "random", "batch_size": 4, **small},
                       {"objective": "dual", "sampler": "tas-balanced", "batch_size": 4, **small}]}},
        "rerank": {"depth": 10, "max_length": 48, "training": {"depth": 20},
                   "stages": [{"objective": "lce", "batch_queries": 2, "group_size": 4, **small},
                              {"objective": "kl", "teacher": "previous", "batch_queries": 2, "group_size": 4,
                               **small}]},
    }


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_dl19_and_dl20_experiments_run_through_snakemake(msmarco_env, tmp_path):
    env, written = msmarco_env
    wf = Workflow(tmp_path / "wf", env)
    shutil.copy(ROOT / "config" / "config.yaml", wf.path / "config" / "config.yaml")  # the shipped experiments
    override = tmp_path / "small.yaml"
    override.write_text(yaml.safe_dump(small_override(), sort_keys=False))
    targets = ["results/dl19/ndcg.tsv", "results/dl20/ndcg.tsv", "results/msmarco-dl20/ndcg.tsv"]
    wf.snakemake(*targets, "--configfile", wf.path / "config" / "config.yaml", override)

    # msmarco-dl20: the judged DL20 queries split by query; figures on the test part only
    rows = read_tsv(wf.path / "results" / "msmarco-dl20" / "ndcg.tsv")
    assert [r["system"] for r in rows] == ["bm25", "dense-zeroshot", "dense", "fusion", "rerank"], rows
    assert {int(r["queries"]) for r in rows} == {2}, rows  # 40% of the 5 judged queries
    assert all(0.0 <= float(r["nDCG@10"]) <= 1.0 for r in rows), rows

    systems = ["bm25", "dense", "fusion", "rerank", "tas-balanced"]
    for exp, name in (("dl19", "trec-dl-2019"), ("dl20", "trec-dl-2020")):
        rows = read_tsv(wf.path / "results" / exp / "ndcg.tsv")
        assert [r["system"] for r in rows] == systems, rows
        for r in rows:
            assert int(r["queries"]) == written[name]["queries"], (exp, r)
            assert 0.0 <= float(r["nDCG@10"]) <= 1.0, (exp, r)
        # the collection is written to be easy: every system finds the topic's passages
        by = {r["system"]: float(r["nDCG@10"]) for r in rows}
        assert by["bm25"] > 0.5 and by["dense"] > 0.5, (exp, by)

    # judged training passages missing from the subset were dropped and counted, not fatal
    stats = [json.loads(m.read_text())["stats"] for m in (wf.path / "results").rglob("preprocess/*/manifest.json")]
    assert len(stats) == 2, stats  # dl19/dl20 share theirs (MS MARCO train qrels); msmarco-dl20's own split
    shared = [x for x in stats if x["not_in_corpus"]["positives"] == 5]  # one per train query with i % 2
    assert len(shared) == 1, stats
    assert any("not in the corpus" in w for w in shared[0]["warnings"]), stats
