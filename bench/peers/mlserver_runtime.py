"""MLServer (Seldon) runtime for the serving benchmark: the current Watchkeeper
model behind the V2 inference protocol, no log.

One V2 input per feature (numbers as ``FP64``, categories as ``BYTES``); the runtime
hands them to ``Model.predict`` as a dict of columns, as ``/predict`` does, instead
of building a DataFrame through ``PandasCodec`` (which costs several times more per
request): the comparison is of the serving stacks. Outputs: prediction, lower, upper.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from watchkeeper.registry import ModelRegistry


def _values(data: Any) -> list[Any]:
    values = data.root if hasattr(data, "root") else data
    return [v.decode() if isinstance(v, bytes) else v for v in values]


class WatchkeeperRuntime(MLModel):
    async def load(self) -> bool:
        self._model = ModelRegistry(Path(os.environ["WK_BENCH_REGISTRY"])).load().model
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        columns = {tensor.name: _values(tensor.data) for tensor in payload.inputs}
        predicted = self._model.predict(columns)
        outputs = [
            ResponseOutput(name=name, shape=[array.size], datatype="FP64", data=array.tolist())
            for name, array in (
                ("prediction", predicted.value),
                ("lower", predicted.lower),
                ("upper", predicted.upper),
            )
        ]
        return InferenceResponse(model_name=self.name, outputs=outputs)
