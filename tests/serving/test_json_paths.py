"""Paths of a parsed JSON body: every value in document order, a path spelled only for
what is reported, memory by depth rather than by the values under a long key."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from serving.json_body import parse_json
from serving.json_paths import Members, path_text, walk
from watchkeeper.errors import BadRequest


def test_walk_gives_every_value_in_document_order_with_its_path() -> None:
    payload = {"instances": [{"a": 1, "b": [2, {"c": "x"}]}], "z": None}

    walked = [(path_text(node), value) for node, value in walk(payload)]

    assert [path for path, _ in walked] == [
        "body",
        "instances",
        "instances[0]",
        "instances[0].a",
        "instances[0].b",
        "instances[0].b[0]",
        "instances[0].b[1]",
        "instances[0].b[1].c",
        "z",
    ]
    assert walked[-2] == ("instances[0].b[1].c", "x")


def test_walk_takes_each_member_of_a_repeated_key_in_turn() -> None:
    payload = Members([("a", 1), ("a", Members([("b", 2)]))])

    walked = [(path_text(node), value) for node, value in walk(payload)][1:]

    assert walked == [("a", 1), ("a", Members([("b", 2)])), ("a.b", 2)]


def test_a_path_writes_a_surrogate_in_a_key_as_an_escape() -> None:
    assert path_text(((None, "x\ud800"), 3)) == "x\\ud800[3]"


def test_walk_goes_deeper_than_pythons_recursion_limit() -> None:
    payload: Any = "leaf"
    for _ in range(5000):
        payload = [payload]

    *_, (node, value) = walk(payload)

    assert value == "leaf" and path_text(node) == "[0]" * 5000


LONG_KEY = "k" * 10_000
NUMBERS = ",".join(["0"] * 20_000)


@pytest.mark.parametrize(
    "body",
    [
        '{"a":"\\ud800","' + LONG_KEY + '":[' + NUMBERS + "]}",  # a lone surrogate
        '{"a":NaN,"a":1,"' + LONG_KEY + '":[' + NUMBERS + "]}",  # a repeated key
    ],
    ids=["surrogate", "repeated-key"],
)
def test_naming_a_problem_costs_no_memory_per_value_under_a_long_key(body: str) -> None:
    """Each value's path was built up front: a 10 KB key over 20,000 numbers, a 50 KB
    body, took 240 MB (a 1 MB body of the same shape would have taken over 100 GB)."""
    tracemalloc.start()
    try:
        with pytest.raises(BadRequest) as refused:
            parse_json(body.encode())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert refused.value.details[0].field == "a"
    assert peak < 10_000_000, f"{peak:,} bytes"
