"""irflow.fuse: reciprocal rank fusion and CombSUM against hand-computed values."""

from __future__ import annotations

import math

import pytest

from irflow.errors import IrflowError
from irflow.fuse import combsum, rrf

RUN_A = {"q1": [("d1", 3.0), ("d2", 2.0), ("d3", 1.0)], "q2": [("x", 1.0)]}
RUN_B = {"q1": [("d3", 0.9), ("d1", 0.8), ("d4", 0.7)]}


def _approx(run):
    return {q: [(d, pytest.approx(s, abs=1e-15)) for d, s in docs] for q, docs in run.items()}


def test_rrf_hand_computed():
    fused = rrf([RUN_A, RUN_B], k=60)
    # A ranks d1,d2,d3 at 1,2,3; B ranks d3,d1,d4 at 1,2,3
    expected = {
        "q1": [
            ("d1", 1 / 61 + 1 / 62),
            ("d3", 1 / 63 + 1 / 61),
            ("d2", 1 / 62),
            ("d4", 1 / 63),
        ],
        "q2": [("x", 1 / 61)],  # only A answers q2
    }
    assert fused == _approx(expected)
    assert rrf([RUN_A, RUN_B], k=60, depth=2)["q1"] == _approx(expected)["q1"][:2]


def test_rrf_ranks_ties_by_doc_id_and_ignores_input_order():
    # input lists are unsorted and tied: ranks follow (-score, doc_id) -> a=1, b=2, c=3
    a = {"q": [("c", 0.5), ("b", 1.0), ("a", 1.0)]}
    b = {"q": [("b", 7.0)]}
    fused = rrf([a, b], k=1)
    assert fused == {"q": [("b", 1 / 3 + 1 / 2), ("a", 1 / 2), ("c", 1 / 4)]}


def test_rrf_output_ties_sorted_by_doc_id():
    a = {"q": [("z", 2.0), ("y", 1.0)]}
    b = {"q": [("y", 2.0), ("z", 1.0)]}
    assert [d for d, _ in rrf([a, b])["q"]] == ["y", "z"]


def test_combsum_minmax_hand_computed():
    a = {"q": [("d1", 3.0), ("d2", 2.0), ("d3", 1.0)]}
    b = {"q": [("d3", 10.0), ("d4", 5.0), ("d1", 0.0)]}
    # minmax: A -> d1 1, d2 .5, d3 0 ; B -> d3 1, d4 .5, d1 0 ; missing docs contribute 0
    assert combsum([a, b], norm="minmax") == {"q": [("d1", 1.0), ("d3", 1.0), ("d2", 0.5), ("d4", 0.5)]}
    assert combsum([a, b], norm="minmax", weights=[2, 1]) == {
        "q": [("d1", 2.0), ("d2", 1.0), ("d3", 1.0), ("d4", 0.5)]
    }
    assert combsum([a, b], norm="minmax", depth=1) == {"q": [("d1", 1.0)]}


def test_combsum_constant_scores_and_no_norm():
    a = {"q": [("d1", 4.0), ("d2", 4.0)]}
    b = {"q": [("d2", 1.0), ("d3", 3.0)]}
    # minmax of a constant list (run a) is 1.0 for every doc; b: d3 -> 1, d2 -> 0
    assert combsum([a, b], norm="minmax") == {"q": [("d1", 1.0), ("d2", 1.0), ("d3", 1.0)]}
    assert combsum([a, b], norm=None) == {"q": [("d2", 5.0), ("d1", 4.0), ("d3", 3.0)]}


def test_combsum_zscore_hand_computed():
    a = {"q": [("d1", 3.0), ("d2", 1.0)]}  # mean 2, population std 1 -> +1, -1
    b = {"q": [("d2", 6.0), ("d3", 3.0), ("d1", 0.0)]}  # mean 3, std sqrt(6) -> +3/√6, 0, -3/√6
    s = 3 / math.sqrt(6)
    expected = {"q": [("d1", 1 - s), ("d3", 0.0), ("d2", -1 + s)]}
    expected["q"].sort(key=lambda x: (-x[1], x[0]))
    assert combsum([a, b], norm="zscore") == _approx(expected)


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: combsum([RUN_A], norm="l2"), "unknown score normalisation"),
        (lambda: combsum([RUN_A, RUN_B], weights=[1.0]), "1 fusion weights for 2 runs"),
        (lambda: rrf([]), "at least one run"),
        (lambda: rrf([RUN_A], depth=0), "depth must be >= 1"),
    ],
)
def test_fuse_bad_arguments(call, msg):
    with pytest.raises(IrflowError, match=msg):
        call()
