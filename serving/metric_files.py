"""Every worker's multiprocess metric files, read as prometheus-client's own collector
reads them, except for a file a starting process has created and not yet sized.

prometheus-client creates a worker's file empty and then sizes it, a moment later; its
collector reads whatever ``*.db`` it finds and fails on an empty one (``struct.error``).
A worker (re)started by gunicorn during a scrape then failed ``/metrics`` with a 500,
and a worker falling back to the version its siblings serve could not read them. An
empty file holds no value yet: it is left out.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from prometheus_client import Metric
from prometheus_client.multiprocess import MultiProcessCollector

_HEADER = 8
"""Bytes before a file's first value: its used-size word, and padding."""


class SizedFilesCollector(MultiProcessCollector):
    """:class:`MultiProcessCollector` over the files of ``path`` that hold a header."""

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= _HEADER:
                    files.append(path)
            except FileNotFoundError:  # a dead worker's live gauge file, removed since
                continue
        return self.merge(files, accumulate=True)
