"""A prediction's position in the log: its request's ``seq`` and its item index.

The log stores one row per request (``requests``), its predictions in it
(``requests.outputs``), so a prediction has no sequence number of its own. Readers
that move through predictions in order (the monitor's watermark, its windows' first
and last rows) use ``request seq × ITEMS_PER_REQUEST + item index``: ordered as the
requests were stored, then by item, and one integer, as the per-prediction ``seq``
before migration 0010 was. Positions are not dense: the gap after a request's last
item is never used.
"""

from __future__ import annotations

ITEM_BITS = 20
ITEMS_PER_REQUEST = 1 << ITEM_BITS
"""More predictions than one request may hold (``WATCHKEEPER_MAX_BATCH_SIZE`` is
bounded by it)."""


def prediction_seq(request_seq: int, item_index: int) -> int:
    """The position of item ``item_index`` of the request stored as ``request_seq``."""
    return (request_seq << ITEM_BITS) + item_index


def request_seq_of(seq: int) -> int:
    """The ``seq`` of the request that holds the prediction at position ``seq``."""
    return seq >> ITEM_BITS


def item_index_of(seq: int) -> int:
    return seq & (ITEMS_PER_REQUEST - 1)


def position_text(seq: int) -> str:
    """A position as people read it, as prediction ids name items: its request's
    ``seq``, and ``.index`` for an item after a request's first (``500``, ``37.12``)."""
    request, item = request_seq_of(seq), item_index_of(seq)
    return f"{request}.{item}" if item else str(request)


def window_label(window_id: str) -> str:
    """A monitor window's id (``v1:<first position>-<last position>``) as people read
    it, its positions as :func:`position_text` writes them (``v1:1-500``); an id of
    another form as it is."""
    version, _, span = window_id.rpartition(":")
    first, _, last = span.partition("-")
    if not (version and first.isdigit() and last.isdigit()):
        return window_id
    return f"{version}:{position_text(int(first))}-{position_text(int(last))}"
