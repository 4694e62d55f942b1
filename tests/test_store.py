"""The store's contract: keys form a Merkle chain, publication is atomic, verify finds tampering."""

import json

import pytest

from irflow.errors import IrflowError
from irflow.store import Artifact, canonical_json, compute_key, is_complete, read_manifest, verify


def test_key_is_canonical_and_depends_on_everything():
    k = compute_key("index", {"a": 1, "b": [1, 2]}, {"x": "k1"})
    assert k == compute_key("index", {"b": [1, 2], "a": 1}, {"x": "k1"})  # key order is irrelevant
    assert len(k) == 16 and all(c in "0123456789abcdef" for c in k)
    assert k != compute_key("index", {"a": 2, "b": [1, 2]}, {"x": "k1"})
    assert k != compute_key("index", {"a": 1, "b": [1, 2]}, {"x": "k2"})
    assert k != compute_key("search", {"a": 1, "b": [1, 2]}, {"x": "k1"})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_merkle_chain_through_artifacts(tmp_path):
    with Artifact(tmp_path, "prepare", {"p": 1}) as a:
        (a.tmp / "f.txt").write_text("x")
    with Artifact(tmp_path, "encode", {"q": 1}, {"prepared": a.path}) as b:
        (b.tmp / "g.txt").write_text("y")
    m = read_manifest(b.path)
    assert m["inputs"]["prepared"]["key"] == a.key
    assert b.key == compute_key("encode", {"q": 1}, {"prepared": a.key})
    assert m["files"]["g.txt"]["bytes"] == 1 and "torch" in m["versions"] or "numpy" in m["versions"]


def test_failed_step_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with Artifact(tmp_path, "prepare", {"p": 1}) as a:
            (a.tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert not a.path.exists()
    assert list((tmp_path / "prepare").iterdir()) == []  # the temporary sibling is gone too


def test_incomplete_leftover_is_replaced(tmp_path):
    art = Artifact(tmp_path, "prepare", {"p": 1})
    art.path.mkdir(parents=True)  # what Snakemake leaves: the output's parent folder, no manifest
    (art.path / "stale.txt").write_text("old")
    assert not art.complete
    with art:
        (art.tmp / "new.txt").write_text("new")
    assert is_complete(art.path)
    assert sorted(p.name for p in art.path.iterdir()) == ["manifest.json", "new.txt"]


def test_expect_mismatch_is_an_error(tmp_path):
    with pytest.raises(IrflowError, match="disagree"):
        Artifact(tmp_path, "prepare", {"p": 1}, expect=tmp_path / "prepare" / "0000000000000000")


def test_input_must_be_complete(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(IrflowError, match="not a complete irflow artifact"):
        Artifact(tmp_path, "encode", {}, {"prepared": tmp_path / "half"})


def test_verify_reports_altered_missing_and_unexpected(tmp_path):
    with Artifact(tmp_path, "prepare", {"p": 1}) as a:
        (a.tmp / "a.txt").write_text("aaaa")
        (a.tmp / "b.txt").write_text("bbbb")
    assert verify(a.path) == []
    (a.path / "a.txt").write_text("aaab")  # same size, other content
    (a.path / "b.txt").unlink()
    (a.path / "c.txt").write_text("c")
    assert verify(a.path) == ["altered: a.txt", "missing: b.txt", "unexpected: c.txt"]
    assert json.loads((a.path / "manifest.json").read_text())["key"] == a.key
