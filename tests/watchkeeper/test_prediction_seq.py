"""A prediction's position, and a window's, as people read them."""

from __future__ import annotations

from watchkeeper.db.prediction_seq import position_text, prediction_seq, window_label


def test_a_position_reads_as_its_request_and_an_item_after_the_first() -> None:
    assert position_text(prediction_seq(500, 0)) == "500"
    assert position_text(prediction_seq(37, 12)) == "37.12"


def test_a_window_id_reads_by_requests_and_items_and_another_form_as_it_is() -> None:
    stored = f"v2:{prediction_seq(249, 0)}-{prediction_seq(521, 999)}"

    assert window_label(stored) == "v2:249-521.999"
    assert window_label("a window") == "a window"
