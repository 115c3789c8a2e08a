"""A category column as distinct values and codes reads as its rows, and the encoder
codes it as it codes the same rows as a list."""

from __future__ import annotations

import numpy as np

from watchkeeper.category_column import CategoryColumn
from watchkeeper.encoding import TabularEncoder

COLUMN = CategoryColumn(("Elm", "Oak", None), np.array([0, 2, 1, 0], dtype=np.int8))
ROWS = ["Elm", None, "Oak", "Elm"]


def test_it_reads_as_the_sequence_of_its_rows() -> None:
    assert len(COLUMN) == 4
    assert list(COLUMN) == ROWS == COLUMN.tolist()
    assert (COLUMN[1], COLUMN[2], COLUMN[1:3]) == (None, "Oak", [None, "Oak"])
    assert "Oak" in COLUMN and "Ash" not in COLUMN


def test_the_encoder_codes_it_as_the_same_rows_as_a_list() -> None:
    encoder = TabularEncoder(numeric=["area"], categorical=["street"])
    encoder.fit({"area": [1.0, 2.0, 3.0], "street": ["Oak", "Elm", "Ash"]})
    area = [5.0, 6.0, 7.0, 8.0]
    unseen = CategoryColumn(("Pine", "Elm"), np.array([0, 1, 1, 0]))

    np.testing.assert_array_equal(
        encoder.transform({"area": area, "street": COLUMN}),
        encoder.transform({"area": area, "street": ROWS}),
    )
    np.testing.assert_array_equal(
        encoder.transform({"area": area, "street": unseen}),
        encoder.transform({"area": area, "street": ["Pine", "Elm", "Elm", "Pine"]}),
    )
