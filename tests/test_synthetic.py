"""The embedded synthetic collection: deterministic, well formed, and neither trivial nor broken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from irflow.data import synthetic
from irflow.data.synthetic import (
    GENERATOR_VERSION,
    PRESETS,
    SyntheticCollection,
    SyntheticSpec,
    generate,
    get_spec,
)
from irflow.errors import IrflowError

TINY = get_spec("tiny")


def _fresh(spec: SyntheticSpec) -> SyntheticCollection:
    """Generate bypassing the cache."""
    return synthetic._generate.__wrapped__(spec)


def _digest(c: SyntheticCollection) -> str:
    return hashlib.sha256(json.dumps([c.docs, c.queries, c.qrels]).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# presets, specs, errors


def test_presets_sizes():
    tiny = generate("tiny")
    assert len(tiny.docs) == 200 and len(tiny.queries) == 30
    demo = generate("demo")
    assert 2000 <= len(demo.docs) <= 3000
    assert 150 <= len(demo.queries) <= 250
    for name, spec in PRESETS.items():
        assert spec.name == name
        assert get_spec(name) is spec


def test_unknown_name_raises():
    with pytest.raises(IrflowError, match=r"unknown synthetic collection 'nope'; known: .*demo.*tiny"):
        get_spec("nope")
    with pytest.raises(IrflowError, match="unknown synthetic collection"):
        generate("nope")


def test_bad_spec_raises():
    with pytest.raises(IrflowError, match="n_topics"):
        generate(dataclasses.replace(TINY, n_topics=0))
    with pytest.raises(IrflowError, match="paraphrase_rate"):
        generate(dataclasses.replace(TINY, paraphrase_rate=1.5))
    with pytest.raises(IrflowError, match="min_words"):
        generate(dataclasses.replace(TINY, min_words=200, max_words=100))


def test_identity_json_and_changes_with_every_parameter():
    base = TINY.identity()
    assert json.loads(json.dumps(base)) == base
    assert base["generator_version"] == GENERATOR_VERSION
    assert TINY.identity() == dataclasses.replace(TINY).identity()
    for f in dataclasses.fields(SyntheticSpec):
        value = getattr(TINY, f.name)
        if isinstance(value, str):
            other = value + "x"
        elif isinstance(value, bool):
            other = not value
        elif isinstance(value, int):
            other = value + 1
        elif isinstance(value, float):
            other = value / 2 if value else 0.5
        elif isinstance(value, tuple):
            other = (value[0], value[1] + 1)
        else:  # pragma: no cover - a new kind of field: extend this test
            raise AssertionError(f"unhandled field type {f.name}: {type(value)}")
        changed = dataclasses.replace(TINY, **{f.name: other}).identity()
        assert changed != base, f"identity() ignores {f.name}"


def test_list_valued_spec_is_accepted_and_hashable():
    spec = dataclasses.replace(TINY, secondary_facets=[1, 2], query_context_rate=[0.3, 1.0])
    assert spec == TINY and hash(spec) == hash(TINY)
    assert generate(spec) is generate(TINY)


# ---------------------------------------------------------------------------------------------
# determinism


def test_same_spec_same_output():
    a = generate("tiny")
    assert generate(TINY) is a  # cached
    b = _fresh(TINY)
    assert b is not a
    assert (a.docs, a.queries, a.qrels) == (b.docs, b.queries, b.qrels)
    # the name is a label only: content depends on the generator parameters
    c = _fresh(dataclasses.replace(TINY, name="other"))
    assert (a.docs, a.queries, a.qrels) == (c.docs, c.queries, c.qrels)


def test_different_seed_differs():
    a = generate(TINY)
    b = generate(dataclasses.replace(TINY, seed=TINY.seed + 1))
    assert a.docs != b.docs
    assert a.queries != b.queries


def test_independent_of_hash_randomisation():
    code = (
        "import hashlib, json; from irflow.data.synthetic import generate; c = generate('tiny'); "
        "print(hashlib.sha256(json.dumps([c.docs, c.queries, c.qrels]).encode()).hexdigest())"
    )
    want = _digest(generate("tiny"))
    for hash_seed in ("1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
        )
        assert out.stdout.strip() == want


def test_import_is_light():
    code = (
        "import sys; import irflow.data.synthetic; "
        "heavy = [m for m in ('numpy', 'torch', 'transformers', 'bm25s', 'ir_measures') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# well formed


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_ids_unique_and_well_formed(name):
    c = generate(name)
    doc_ids = [d for d, _ in c.docs]
    query_ids = [q for q, _ in c.queries]
    assert len(set(doc_ids)) == len(doc_ids)
    assert len(set(query_ids)) == len(query_ids)
    assert all(re.fullmatch(r"d\d{5}", d) for d in doc_ids)
    assert all(re.fullmatch(r"q\d{3}", q) for q in query_ids)
    assert len({t for _, t in c.queries}) == len(c.queries)  # no two queries alike


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_texts(name):
    c = generate(name)
    spec = get_spec(name)
    for _, text in c.docs:
        n = len(text.split())
        assert spec.min_words <= n <= spec.max_words, text
        assert text[0].isupper() and text.endswith(".")
        assert "{" not in text and "}" not in text
    for _, text in c.queries:
        assert text.strip() == text and "{" not in text and 1 <= len(text.split()) <= 30


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_qrels(name):
    c = generate(name)
    doc_ids = {d for d, _ in c.docs}
    query_ids = {q for q, _ in c.queries}
    grades = defaultdict(dict)
    for qid, did, grade in c.qrels:
        assert qid in query_ids and did in doc_ids
        assert isinstance(grade, int) and 0 <= grade <= 3
        assert did not in grades[qid], "judged twice"
        grades[qid][did] = grade
    assert set(grades) == query_ids
    for qid in query_ids:
        got = grades[qid].values()
        assert max(got) == 3, f"{qid} has no perfectly relevant passage"
        assert 0 in got and 1 in got


def test_vocabulary_is_well_formed():
    vocab = synthetic._vocabulary()
    assert len(vocab) >= 25
    for topic in vocab:
        assert len(topic.subtopics) >= 3
        assert all(c in {t.name for t in vocab} for c in topic.confusable)
        for sub in topic.subtopics:
            assert len(sub.facets) >= 5
            for facet in sub.facets:
                assert len(facet.doc_forms) >= 2 and len(facet.paraphrases) >= 1
                assert all(f and f == f.strip() for f in facet.doc_forms + facet.paraphrases)


# ---------------------------------------------------------------------------------------------
# neither trivial nor broken


def test_bm25_on_tiny_is_useful_but_not_trivial():
    bm25s = pytest.importorskip("bm25s")
    Stemmer = pytest.importorskip("Stemmer")
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import Qrel, ScoredDoc, nDCG

    c = generate("tiny")
    doc_ids = [d for d, _ in c.docs]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    retriever.index(bm25s.tokenize([t for _, t in c.docs], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize([t for _, t in c.queries], stopwords="en", stemmer=stemmer,
                                  show_progress=False)
    k = 100
    results, scores = retriever.retrieve(query_tokens, k=k, show_progress=False)
    run = [
        ScoredDoc(qid, doc_ids[results[i, j]], float(scores[i, j]))
        for i, (qid, _) in enumerate(c.queries)
        for j in range(k)
    ]
    rng = random.Random(0)
    random_run = [
        ScoredDoc(qid, did, float(-rank))
        for qid, _ in c.queries
        for rank, did in enumerate(rng.sample(doc_ids, k))
    ]
    qrels = [Qrel(q, d, g) for q, d, g in c.qrels]
    bm25 = ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]
    rand = ir_measures.calc_aggregate([nDCG @ 10], qrels, random_run)[nDCG @ 10]
    assert rand < 0.15
    assert bm25 > max(0.3, rand + 0.25), (bm25, rand)
    assert bm25 < 0.95, bm25


# ---------------------------------------------------------------------------------------------
# streaming scale collections


def _scale_digest(rows) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row).encode())
    return h.hexdigest()


def test_scale_names_and_identity():
    for name in ("scale-10k", "scale-100k", "scale-1m", "scale-10k-q100k", "scale-1m-q100k"):
        spec = get_spec(name)
        assert spec.name == name
        assert json.loads(json.dumps(spec.identity())) == spec.identity()
    assert (get_spec("scale-100k").passages, get_spec("scale-100k").queries) == (100_000, 10_000)
    assert (get_spec("scale-1m-q100k").passages, get_spec("scale-1m-q100k").queries) == (1_000_000, 100_000)
    assert get_spec("scale-10k").identity() != get_spec("scale-100k").identity()
    assert get_spec("scale-10k").identity() != get_spec("scale-10k-q100k").identity()
    with pytest.raises(IrflowError, match="row by row"):
        generate("scale-10k")
    with pytest.raises(IrflowError, match="known: .*scale-10k"):
        get_spec("scale-3k")


def test_scale_10k_counts_ids_and_qrels():
    spec = get_spec("scale-10k")
    doc_ids = [d for d, _ in synthetic.iter_docs("scale-10k")]
    assert len(doc_ids) == spec.passages == len(set(doc_ids)) == 10_000
    assert all(re.fullmatch(r"d\d{8}", d) for d in doc_ids[:100])
    queries = list(synthetic.iter_queries("scale-10k"))
    assert len(queries) == spec.queries == len({q for q, _ in queries})
    grades = defaultdict(dict)
    known = set(doc_ids)
    for qid, did, grade in synthetic.iter_qrels("scale-10k"):
        assert did in known and 2 <= grade <= 3
        assert did not in grades[qid]
        grades[qid][did] = grade
    assert set(grades) == {q for q, _ in queries}
    assert all(max(g.values()) == 3 for g in grades.values())
    assert sum(len(g) for g in grades.values()) > 2 * len(queries)  # siblings are judged, not only anchors


def test_scale_texts_are_like_the_presets():
    text = get_spec("scale-10k").text
    for n, (_, body) in enumerate(synthetic.iter_docs("scale-10k")):
        assert text.min_words <= len(body.split()) <= text.max_words
        assert body[0].isupper() and body.endswith(".") and "{" not in body
        if n == 2000:
            break


def test_scale_is_deterministic_and_rows_are_independent():
    a = _scale_digest(synthetic.iter_docs("scale-10k"))
    assert a == _scale_digest(synthetic.iter_docs("scale-10k"))
    assert _scale_digest(synthetic.iter_qrels("scale-10k")) == _scale_digest(synthetic.iter_qrels("scale-10k"))
    # a bigger collection starts with the same passages (each row depends on its number only)
    big, small = synthetic.iter_docs("scale-1m"), synthetic.iter_docs("scale-10k")
    assert [next(big) for _ in range(50)] == [next(small) for _ in range(50)]
    other = dataclasses.replace(get_spec("scale-10k"), seed=18)
    assert _scale_digest(synthetic.iter_docs(other)) != a


def test_scale_streams_in_constant_memory():
    import tracemalloc

    def peak_after(n_rows: int, rows) -> int:
        tracemalloc.start()
        try:
            for _ in zip(range(n_rows), rows):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    synthetic._vocabulary()  # cached once, not counted
    for make in (synthetic.iter_docs, synthetic.iter_queries, synthetic.iter_qrels):
        small = peak_after(1_000, make("scale-10k"))
        full = peak_after(10_000, make("scale-10k"))
        assert full < small + 64 * 1024, (make.__name__, small, full)
