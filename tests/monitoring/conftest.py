"""Fixtures for the monitor: detectors fitted on one part of the training years, so
that the other part is fresh data from the same distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.detectors import DetectorSuite
from watchkeeper.dataset import Dataset
from watchkeeper.training import TrainedModel


@pytest.fixture(scope="session")
def training_split(ames: Dataset, trained: TrainedModel) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = ames.between(None, 200712).frame[list(trained.model.schema.names)]
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    cut = int(len(shuffled) * 0.6)
    return shuffled.iloc[:cut].reset_index(drop=True), shuffled.iloc[cut:].reset_index(drop=True)


@pytest.fixture(scope="session")
def suite(
    training_split: tuple[pd.DataFrame, pd.DataFrame], trained: TrainedModel
) -> DetectorSuite:
    reference, _ = training_split
    predictions = trained.model.predict(reference).value
    return DetectorSuite.fit(trained.model.schema, reference, np.asarray(predictions))
