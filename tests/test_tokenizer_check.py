"""Token ids are only meaningful to a model with the tokenizer that made them: prepare records it,
readers compare (the CLI round trip is in test_encode.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from irflow.errors import IrflowError
from irflow.models.resolve import (TOKENS_RECORD, check_tokenizer, identity, load_tokenizer, read_tokens_record,
                                   tokenizer_digest)
from irflow.prepare import PrepareParams, prepare


@pytest.fixture()
def prepared(tmp_path, tiny_bert):
    out = tmp_path / "prepared"
    out.mkdir()
    stats = prepare(PrepareParams(dataset="synthetic:tiny", kind="queries", tokenizer=str(tiny_bert), max_length=16), out)
    assert stats["tokenizer"] == json.loads((out / TOKENS_RECORD).read_text())
    return out


def test_prepare_records_the_tokenizer_and_readers_compare(prepared, tiny_bert, tmp_path):
    rec = read_tokens_record(prepared)
    assert rec["max_length"] == 16 and rec["tokenizer"] == str(tiny_bert)
    assert rec["sha256"] == tokenizer_digest(load_tokenizer(str(tiny_bert)))
    copy = tmp_path / "copy"  # another directory with the same tokenizer (a model trained from it): accepted
    shutil.copytree(tiny_bert, copy)
    assert check_tokenizer(prepared, str(copy)) == rec
    with pytest.raises(IrflowError) as e:
        check_tokenizer(prepared, "all-MiniLM-L6-v2")
    msg = str(e.value)
    assert "\n" not in msg and str(tiny_bert) in msg and "'all-MiniLM-L6-v2'" in msg
    (prepared / TOKENS_RECORD).unlink()  # tokens whose maker is unknown are not trusted either
    with pytest.raises(IrflowError, match="which tokenizer made them"):
        check_tokenizer(prepared, str(tiny_bert))


def test_digest_ignores_call_time_state_but_not_the_vocabulary(tiny_bert, tmp_path):
    tok = load_tokenizer(str(tiny_bert))
    before = tokenizer_digest(tok)
    tok(["alpha beta"] * 2, truncation=True, max_length=3, padding="max_length")  # sets backend truncation/padding
    assert tokenizer_digest(tok) == before
    tok.add_tokens(["zyxwv"])
    assert tokenizer_digest(tok) != before


def test_search_refuses_a_model_changed_since_encoding(tmp_path, tiny_bert):
    from irflow.search import check_index_model

    model = tmp_path / "m"
    shutil.copytree(tiny_bert, model)
    tok = load_tokenizer(str(model))
    spec = {"model": str(model), "pooling": "mean", "normalize": True, "model_identity": identity(str(model)),
            "tokenizer_sha256": tokenizer_digest(tok)}
    assert tokenizer_digest(check_index_model(tmp_path, spec)) == spec["tokenizer_sha256"]
    with pytest.raises(IrflowError, match="not the one the index was encoded with"):
        check_index_model(tmp_path, {**spec, "tokenizer_sha256": "0" * 64})
    from safetensors.torch import load_file, save_file

    state = load_file(str(model / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name] + 1
    save_file(state, str(model / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IrflowError, match="changed since the index was encoded"):
        check_index_model(tmp_path, spec)


def test_cluster_reuses_prepared_tokens_only_from_the_same_tokenizer(prepared, tiny_bert):
    import numpy as np

    from irflow.cluster import ClusterParams, _query_tokens

    rows = np.arange(3)
    _, _, source = _query_tokens(ClusterParams(model=str(tiny_bert), max_length=16), prepared, rows)
    assert source == "prepared"
    _, _, source = _query_tokens(ClusterParams(model="all-MiniLM-L6-v2", max_length=16), prepared, rows)
    assert source == "tokenizer"
