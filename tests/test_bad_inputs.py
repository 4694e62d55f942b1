"""A catalogue of bad inputs, each run through the real ``irflow`` CLI (or Snakemake) in a subprocess.

For every user error the promise is the same: exit status 2, exactly one ``irflow <cmd>: error:``
line on stderr that names the file (or option / config key) and, where the input has lines, the
line as ``:<n>:``; no Python traceback; and nothing published in the store: no ``manifest.json``
under ``<store>/<step>/`` and no leftover ``.<key>.tmp-*`` directory. Where repairing is right
(a run with duplicate doc ids, qrels of queries outside the topics), the step succeeds, warns
with a count on stderr and records the same warning in the artifact's ``stats.warnings``.
Config errors stop Snakemake before any job runs, naming the key, and no store is created at all.

The offline-download case asks ir_datasets for a registered dataset that is not in the offline
home. Without a network it fails at name resolution at once; where a network silently drops
packets, ir_datasets would wait ``IR_DATASETS_DL_TIMEOUT`` (15 s) per try, 3 tries
(``IR_DATASETS_DL_TRIES``), per mirror. The test sets ``IR_DATASETS_DL_TRIES=1`` and
``IR_DATASETS_DL_TIMEOUT=5`` (ir_datasets' own download settings, see
``ir_datasets/util/download.py``) so that it fails within seconds either way.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import IRFLOW

TIMEOUT_S = 180


# ----------------------------------------------------------------------------------------- helpers


def run_cli(args, env, cwd, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(env, **(extra_env or {}))
    return subprocess.run(IRFLOW + [str(a) for a in args], env=e, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def error_lines(cmd: str, stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"irflow {cmd}: error:")]


def manifests(store: Path, step: str) -> list[Path]:
    return sorted((store / step).rglob("manifest.json")) if (store / step).exists() else []


def leftover_tmp(store: Path) -> list[Path]:
    return sorted(store.rglob(".*.tmp-*")) if store.exists() else []


QUERIES_TSV = "q1\tapple pie recipe\nq2\tbanana bread\nq3\tcherry tart\n"
QRELS = "q1 0 d1 2\nq1 0 d2 0\nq2 0 d3 1\nq3 0 d1 1\n"
GOOD_RUN = "q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 2.0 t\nq2 Q0 d3 1 1.0 t\nq3 Q0 d2 1 1.0 t\n"


class Ctx:
    """A scratch directory with a store; builds the upstream artifacts that evaluate/index need."""

    def __init__(self, tmp: Path, env: dict):
        self.tmp = tmp
        self.env = env
        self.store = tmp / "store"

    def file(self, name: str, data: str | bytes) -> Path:
        return write(self.tmp / "inputs" / name, data)

    def prepared_queries(self) -> Path:
        """A real prepare artifact of kind queries, made by the CLI."""
        q = self.file("queries.tsv", QUERIES_TSV)
        r = run_cli(_prepare(self, q, "queries"), self.env, self.tmp)
        assert r.returncode == 0, r.stderr
        return Path(r.stdout.strip().splitlines()[-1])

    def search_artifact(self, run_text: str) -> Path:
        """A search artifact holding ``run.trec`` exactly as given (a run no irflow step would write)."""
        from irflow.store import Artifact

        art = Artifact(self.store, "search", {"test_run": run_text})
        with art:
            (art.tmp / "run.trec").write_text(run_text)
        return art.path

    def encode_artifact(self, rows: int = 8, dim: int = 4) -> Path:
        """An encode artifact with random float16 vectors (no model needed)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from irflow.store import Artifact

        art = Artifact(self.store, "encode", {"test_vectors": [rows, dim]})
        with art:
            rng = np.random.default_rng(0)
            np.save(art.tmp / "emb.npy", rng.standard_normal((rows, dim)).astype(np.float16))
            pq.write_table(pa.table({"id": [f"d{i}" for i in range(rows)]}), art.tmp / "ids.parquet")
            (art.tmp / "encoder.json").write_text(json.dumps({"model": "test", "pooling": "mean",
                                                              "normalize": True}) + "\n")
        return art.path

    def evaluate_args(self, run: Path, qrels: str | Path, *extra) -> list:
        return ["evaluate", "--run", f"sys={run}", "--qrels", qrels, "--queries", self.prepared_queries(),
                *extra, "--store", self.store]


@dataclass
class Bad:
    """A command that must fail: what it is, which step must publish nothing, what the error names."""

    args: list
    step: str
    names: list[str]  # substrings of the error line (the file / option / key, and the reason)
    line: int | None = None  # the ``:<line>:`` the error line must carry
    extra_env: dict = field(default_factory=dict)

    @property
    def cmd(self) -> str:
        return str(self.args[0])


def _prepare(ctx: Ctx, dataset, kind: str = "docs", *extra) -> list:
    return ["prepare", "--dataset", dataset, "--kind", kind, *extra, "--store", ctx.store]


# ------------------------------------------------------------------------------ catalogue: errors


def missing_file(ctx):
    return Bad(_prepare(ctx, "/nonexistent/docs.jsonl"), "prepare",
               ["/nonexistent/docs.jsonl", "no such file"])


def malformed_jsonl_line(ctx):
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n{"doc_id": "d2", "text": "b"}\n'
                               '{"doc_id": "d3", "text": "c"\n{"doc_id": "d4", "text": "d"}\n')
    return Bad(_prepare(ctx, f), "prepare", [str(f), "malformed JSON"], line=3)


def jsonl_missing_text_field(ctx):
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n{"doc_id": "d2", "body": "b"}\n')
    return Bad(_prepare(ctx, f), "prepare", [str(f), "'text'"], line=2)


def jsonl_line_not_an_object(ctx):
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n["d2", "b"]\n')
    return Bad(_prepare(ctx, f), "prepare", [str(f), "JSON object"], line=2)


def tsv_wrong_column_count(ctx):
    f = ctx.file("docs.tsv", "d1\tfirst doc\nd2\tsecond\textra column\nd3\tthird\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "found 3"], line=2)


def duplicate_doc_ids(ctx):
    f = ctx.file("docs.tsv", "d1\ta\nd2\tb\nd3\tc\nd1\td\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "duplicate doc id 'd1'", "first at line 1"], line=4)


def duplicate_query_ids(ctx):
    f = ctx.file("queries.jsonl", '{"query_id": "q1", "text": "a"}\n{"query_id": "q2", "text": "b"}\n'
                                  '{"query_id": "q1", "text": "c"}\n')
    return Bad(_prepare(ctx, f, "queries"), "prepare", [str(f), "duplicate query id 'q1'", "first at line 1"],
               line=3)


def non_utf8_bytes(ctx):
    f = ctx.file("docs.tsv", b"d1\tplain\nd2\tlatin-1 caf\xe9 \xff\nd3\tok\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "UTF-8"], line=2)


def empty_corpus_empty_file(ctx):
    f = ctx.file("docs.tsv", "")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "no docs"])


def empty_corpus_blank_lines(ctx):
    f = ctx.file("docs.jsonl", "\n   \n\t\n\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "no docs"])


def jsonl_null_text(ctx):
    # str(None) would be stored as the text "None"
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n{"doc_id": "d2", "text": null}\n')
    return Bad(_prepare(ctx, f), "prepare", [str(f), "'text' must be a string", "null"], line=2)


def jsonl_null_id(ctx):
    f = ctx.file("queries.jsonl", '{"query_id": "q1", "text": "a"}\n{"query_id": "q2", "text": "b"}\n'
                                  '{"query_id": null, "text": "c"}\n')
    return Bad(_prepare(ctx, f, "queries"), "prepare", [str(f), "'query_id'", "null"], line=3)


def jsonl_list_as_text(ctx):
    # str(["a", "b"]) would be stored as the text "['a', 'b']"
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": ["a", "b"]}\n{"doc_id": "d2", "text": "b"}\n')
    return Bad(_prepare(ctx, f), "prepare", [str(f), "'text' must be a string", "list"], line=1)


def doc_id_with_whitespace(ctx):
    # would be published, then break the whitespace-separated run file written by search
    f = ctx.file("docs.tsv", "d1\ta\nd2\tb\nd 3\tc\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "doc id 'd 3'", "whitespace"], line=3)


def query_id_with_whitespace_in_jsonl(ctx):
    f = ctx.file("queries.jsonl", '{"query_id": "q1\\tx", "text": "a"}\n')
    return Bad(_prepare(ctx, f, "queries"), "prepare", [str(f), "query id", "whitespace"], line=1)


def nul_byte_in_tsv(ctx):
    f = ctx.file("docs.tsv", b"d1\ta\nd2\tb\x00c\nd3\tc\n")
    return Bad(_prepare(ctx, f), "prepare", [str(f), "NUL byte"], line=2)


def directory_instead_of_file(ctx):
    d = ctx.tmp / "inputs" / "docs.tsv"
    d.mkdir(parents=True)
    return Bad(_prepare(ctx, d), "prepare", [str(d), "is a directory"])


def unknown_irds_id(ctx):
    return Bad(_prepare(ctx, "irds:no-such/dataset"), "prepare",
               ["irds:no-such/dataset", "unknown ir_datasets id"])


def irds_download_offline(ctx):
    # Registered in ir_datasets but not in the offline home: reading it means a download.
    return Bad(_prepare(ctx, "irds:msmarco-passage/trec-dl-2019/judged", "queries"), "prepare",
               ["irds:msmarco-passage/trec-dl-2019/judged", "not available offline",
                "could not be downloaded"],
               extra_env={"IR_DATASETS_DL_TRIES": "1", "IR_DATASETS_DL_TIMEOUT": "5"})


def unknown_synthetic_name(ctx):
    return Bad(_prepare(ctx, "synthetic:no-such"), "prepare", ["'no-such'", "unknown synthetic"])


def unrecognised_dataset_spec(ctx):
    return Bad(_prepare(ctx, "nosuchthing"), "prepare", ["'nosuchthing'", "unrecognised dataset spec"])


def tokenizer_not_available_offline(ctx):
    f = ctx.file("docs.tsv", "d1\ta\n")
    return Bad(_prepare(ctx, f, "docs", "--tokenizer", "no-such-org/no-such-model", "--max-length", "16"),
               "prepare", ["'no-such-org/no-such-model'", "could not be downloaded"])


def qrels_malformed_line(ctx):
    q = ctx.file("qrels.txt", "q1 0 d1 2\nq2 0 d3\nq3 0 d1 1\n")
    return Bad(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), q), "evaluate", [str(q), "found 3"], line=2)


def qrels_grade_not_an_integer(ctx):
    q = ctx.file("qrels.txt", "q1 0 d1 2\nq2 0 d3 1\nq3 0 d1 high\n")
    return Bad(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), q), "evaluate", [str(q), "'high'"], line=3)


def qrels_missing_file(ctx):
    return Bad(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), "/nonexistent/qrels.txt"), "evaluate",
               ["/nonexistent/qrels.txt", "no such file"])


def run_malformed_line(ctx):
    run = ctx.search_artifact("q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 t\nq2 Q0 d3 1 1.0 t\n")
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(run, q), "evaluate", [str(run / "run.trec"), "found 5"], line=2)


def run_score_not_a_number(ctx):
    run = ctx.search_artifact("q1 Q0 d1 1 3.0 t\nq2 Q0 d3 1 high t\n")
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(run, q), "evaluate", [str(run / "run.trec"), "'high'"], line=2)


def run_empty_file(ctx):
    run = ctx.search_artifact("")
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(run, q), "evaluate", [str(run / "run.trec"), "empty run file"])


def run_not_an_artifact(ctx):
    d = ctx.tmp / "not-an-artifact"
    d.mkdir()
    (d / "run.trec").write_text(GOOD_RUN)
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(d, q), "evaluate", [str(d), "no manifest.json"])


def unknown_measure(ctx):
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), q, "--measure", "nDCG@ten"), "evaluate",
               ["'nDCG@ten'", "cannot parse measure"])


def unknown_baseline(ctx):
    q = ctx.file("qrels.txt", QRELS)
    return Bad(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), q, "--baseline", "nope"), "evaluate",
               ["--baseline 'nope'"])


def unknown_faiss_factory(ctx):
    return Bad(["index", "faiss", "--shard", ctx.encode_artifact(), "--factory", "NoSuchIndex,Flat",
                "--store", ctx.store],
               "index", ["'NoSuchIndex,Flat'", "index_factory"])


def faiss_too_few_training_vectors(ctx):
    return Bad(["index", "faiss", "--shard", ctx.encode_artifact(rows=8), "--factory", "IVF64,Flat",
                "--store", ctx.store],
               "index", ["'IVF64,Flat'", "8 vectors"])


def _encode(ctx: Ctx, *shard_args) -> list:
    f = ctx.file("docs.tsv", "d1\ta\nd2\tb\n")
    r = run_cli(_prepare(ctx, f), ctx.env, ctx.tmp)
    assert r.returncode == 0, r.stderr
    prepared = r.stdout.strip().splitlines()[-1]
    return ["encode", "--prepared", prepared, "--model", "all-MiniLM-L6-v2", *shard_args,
            "--device", "cpu", "--store", ctx.store]


def bad_shard(ctx):
    return Bad(_encode(ctx, "--shard", "2", "--num-shards", "2"), "encode", ["--shard", "[0, 2)", "got 2"])


def bad_num_shards(ctx):
    return Bad(_encode(ctx, "--num-shards", "0"), "encode", ["--num-shards", "got 0"])


def _train_bi_encoder(ctx: Ctx, *args) -> list:
    dirs = [ctx.tmp / n for n in ("examples", "queries", "docs")]
    return ["train", "bi-encoder", "--model", "all-MiniLM-L6-v2", "--examples", dirs[0],
            "--queries", dirs[1], "--docs", dirs[2], *args, "--store", ctx.store]


def dual_without_colbert_teacher(ctx):
    return Bad(_train_bi_encoder(ctx, "--objective", "dual", "--teacher", ctx.tmp), "train",
               ["objective dual", "--colbert"])


def tas_without_clusters(ctx):
    return Bad(_train_bi_encoder(ctx, "--sampler", "tas", "--teacher", ctx.tmp), "train",
               ["sampler tas", "--clusters"])


def tas_balanced_without_teacher(ctx):
    return Bad(_train_bi_encoder(ctx, "--objective", "infonce", "--sampler", "tas-balanced", "--clusters", ctx.tmp),
               "train", ["sampler tas-balanced", "--teacher"])


ERRORS: list[Callable[[Ctx], Bad]] = [
    missing_file, malformed_jsonl_line, jsonl_missing_text_field, jsonl_line_not_an_object,
    tsv_wrong_column_count, duplicate_doc_ids, duplicate_query_ids, non_utf8_bytes, empty_corpus_empty_file,
    empty_corpus_blank_lines, jsonl_null_text, jsonl_null_id, jsonl_list_as_text, doc_id_with_whitespace,
    query_id_with_whitespace_in_jsonl, nul_byte_in_tsv, directory_instead_of_file,
    unknown_irds_id, irds_download_offline, unknown_synthetic_name, unrecognised_dataset_spec,
    tokenizer_not_available_offline, qrels_malformed_line, qrels_grade_not_an_integer, qrels_missing_file,
    run_malformed_line, run_score_not_a_number, run_empty_file, run_not_an_artifact, unknown_measure,
    unknown_baseline, unknown_faiss_factory, faiss_too_few_training_vectors, bad_shard, bad_num_shards,
    dual_without_colbert_teacher, tas_without_clusters, tas_balanced_without_teacher,
]


@pytest.mark.parametrize("case", ERRORS, ids=[c.__name__.replace("_", "-") for c in ERRORS])
def test_bad_input_fails_with_one_message_and_publishes_nothing(case, tmp_path, env):
    ctx = Ctx(tmp_path, env)
    bad = case(ctx)
    r = run_cli(bad.args, env, tmp_path, bad.extra_env)

    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = error_lines(bad.cmd, r.stderr)
    assert len(errors) == 1, r.stderr[-3000:]
    msg = errors[0]
    for name in bad.names:
        assert name in msg, f"{name!r} not in {msg!r}"
    if bad.line is not None:
        assert f":{bad.line}:" in msg, msg
    assert manifests(ctx.store, bad.step) == [], f"{bad.step} published despite the error"
    assert leftover_tmp(ctx.store) == [], "temporary directories left in the store"


# ---------------------------------------------------------------------- catalogue: repaired inputs


@dataclass
class Repaired:
    args: list
    warnings: list[str]  # substrings of warnings that must be on stderr and in stats.warnings
    check: Callable[[Path], None] | None = None  # more checks on the published artifact
    step: str = "evaluate"


def run_with_duplicate_doc_ids(ctx):
    # d1 appears twice for q1 (lines 1 and 3), d3 twice for q2 (lines 4 and 5): 2 repaired.
    run = ctx.search_artifact("q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 2.0 t\nq1 Q0 d1 3 1.0 t\n"
                              "q2 Q0 d3 1 1.0 t\nq2 Q0 d3 2 0.5 t\nq3 Q0 d2 1 1.0 t\n")
    q = ctx.file("qrels.txt", QRELS)

    def check(art: Path):
        cov = (art / "coverage.tsv").read_text().splitlines()
        assert cov[1].split("\t")[0] == "sys"
        assert cov[1].split("\t")[3] == "0"  # no query missing
        # d1 kept at its highest score (3.0): rank 1 for q1 whose only relevant doc it is.
        rr = [line.split("\t") for line in (art / "perquery.tsv").read_text().splitlines()]
        assert ["sys", "RR(rel=2)@10", "q1", "1.0000"] in rr

    return Repaired(ctx.evaluate_args(run, q), [f"{run / 'run.trec'}: 2 duplicate doc ids repaired"], check)


def qrels_for_unknown_queries(ctx):
    # q8 and q9 are not among the prepared queries (q1..q3): their 3 rows are dropped.
    q = ctx.file("qrels.txt", QRELS + "q9 0 d1 1\nq9 0 d2 0\nq8 0 d4 2\n")

    def check(art: Path):
        stats = json.loads((art / "manifest.json").read_text())["stats"]
        assert stats["queries"] == 3
        qids = {line.split("\t")[2] for line in (art / "perquery.tsv").read_text().splitlines()[1:]}
        assert qids == {"q1", "q2", "q3"}

    return Repaired(ctx.evaluate_args(ctx.search_artifact(GOOD_RUN), q),
                    [f"{q}: 3 qrels rows for queries not in the topics were dropped"], check)


def docs_with_empty_text(ctx):
    # Kept (an empty passage is a valid, if useless, document), but counted: lines 2 and 4.
    f = ctx.file("docs.jsonl", '{"doc_id": "d1", "text": "a"}\n{"doc_id": "d2", "text": ""}\n'
                               '{"doc_id": "d3", "text": "c"}\n{"doc_id": "d4", "text": "  "}\n')

    def check(art: Path):
        stats = json.loads((art / "manifest.json").read_text())["stats"]
        assert stats["rows"] == 4 and stats["empty_texts"] == 2

    return Repaired(_prepare(ctx, f), [f"{f}: 2 docs with empty text"], check, step="prepare")


REPAIRED = [run_with_duplicate_doc_ids, qrels_for_unknown_queries, docs_with_empty_text]


@pytest.mark.parametrize("case", REPAIRED, ids=[c.__name__.replace("_", "-") for c in REPAIRED])
def test_repairable_input_warns_with_a_count_and_records_it(case, tmp_path, env):
    ctx = Ctx(tmp_path, env)
    rep = case(ctx)
    r = run_cli(rep.args, env, tmp_path)

    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and not error_lines(rep.args[0], r.stderr), r.stderr[-3000:]
    published = manifests(ctx.store, rep.step)
    assert len(published) == 1
    art = published[0].parent
    assert Path(r.stdout.strip().splitlines()[-1]) == art
    recorded = json.loads(published[0].read_text())["stats"]["warnings"]
    for w in rep.warnings:
        assert sum(w in line for line in r.stderr.splitlines()) == 1, f"{w!r} not warned once:\n{r.stderr}"
        assert sum(w in x for x in recorded) == 1, f"{w!r} not recorded once: {recorded}"
    assert leftover_tmp(ctx.store) == []
    if rep.check:
        rep.check(art)


def test_utf8_byte_order_mark_is_not_part_of_the_first_id(tmp_path, env):
    f = write(tmp_path / "docs.tsv", "\ufeffd1\ta\nd2\tb\n".encode("utf-8"))
    r = run_cli(["prepare", "--dataset", f, "--store", tmp_path / "store"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    from irflow.prepare import load_ids

    assert load_ids(Path(r.stdout.strip().splitlines()[-1])) == ["d1", "d2"]


# -------------------------------------------------------------------- catalogue: config (Snakemake)


def _config(**dense) -> dict:
    return {"experiments": {"x": {"corpus": "synthetic:tiny", "queries": "synthetic:tiny",
                                  "systems": {"bm25": {"type": "bm25"},
                                              "dense": {"type": "dense", **dense}}}}}


def _fusion_of_unknown_system() -> dict:
    cfg = _config()
    cfg["experiments"]["x"]["systems"]["f"] = {"type": "fusion", "runs": ["bm25", "nope"]}
    return cfg


CONFIGS = {
    "unknown-config-key": (_config(poolng="mean"), ["experiments.x.systems.dense.poolng", "unknown key"]),
    "wrong-config-type": (_config(shards="four"), ["experiments.x.systems.dense.shards", "integer"]),
    "config-fusion-of-unknown-system": (_fusion_of_unknown_system(),
                                        ["experiments.x", "unknown system 'nope'"]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bad_config_stops_snakemake_before_any_job(name, workflow):
    config, names = CONFIGS[name]
    workflow.write_config(config)
    r = workflow.snakemake("results/x/ndcg.tsv", check=False)
    out = r.stdout + r.stderr

    assert r.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    named = [line for line in out.splitlines() if names[0] in line]
    assert len(named) == 1, out[-3000:]
    for n in names:
        assert n in named[0], named[0]
    assert "Building DAG" not in out and "rule prepare" not in out, out[-3000:]
    assert not (workflow.path / "results").exists(), "a store was created for an invalid config"
