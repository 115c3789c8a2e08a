"""Every value of a parsed JSON body with where it is, for errors that name it by path
(``instances[1].Neighborhood``).

The walk keeps one entry per level of nesting, not one per value, and a value's path is
spelled only for a value reported: building each path up front cost a body's key length
times the length of the array under it (a 50 KB body, a 10 KB key over 20,000 numbers,
took 240 MB), and recursion would stop at Python's limit where the parser did not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Node = tuple["Node", str | int] | None
"""Where a value is: ``(its container's node, its key or index)``; ``None``, the body."""

_END = object()


class Members(list):
    """An object's members as parsed, a repeated key and all: the ``object_pairs_hook``
    for a parse that must see every member (:func:`walk` walks it as an object)."""


def walk(payload: Any) -> Iterator[tuple[Node, Any]]:
    """``payload`` and every value inside it, in document order, each with its node; a
    :class:`Members` value's repeated keys each in turn."""
    yield None, payload
    stack: list[tuple[Node, Iterator[tuple[str | int, Any]]]] = []
    if isinstance(payload, dict | list):
        stack.append((None, _members(payload)))
    while stack:
        parent, members = stack[-1]
        member = next(members, _END)
        if member is _END:
            stack.pop()
            continue
        key, value = member  # type: ignore[misc]
        node = (parent, key)
        yield node, value
        if isinstance(value, dict | list):
            stack.append((node, _members(value)))


def _members(value: dict[str, Any] | list[Any]) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, Members):
        return iter(value)
    return enumerate(value)


def path_text(node: Node) -> str:
    """The path a node names: keys joined by ``.``, indexes as ``[i]``, ``body`` for the
    body itself; surrogates in keys written as ``\\udXXX`` (an error must be encodable)."""
    steps: list[str | int] = []
    while node is not None:
        node, step = node
        steps.append(step)
    parts: list[str] = []
    for step in reversed(steps):
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(f".{printable(step)}" if parts else printable(step))
    return "".join(parts) or "body"


def printable(text: str) -> str:
    """``text`` with surrogates as ``\\udXXX`` escapes: error messages and the log must
    stay encodable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
