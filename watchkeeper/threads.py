"""How many threads each process's numeric libraries may use, from one setting.

OpenMP (scikit-learn's HistGradientBoosting) and BLAS (numpy) size their pools to the
machine's cores by default, one pool per process. Watchkeeper runs several processes on
one host (serving workers, the monitor, the retraining worker, the tests), which then
oversubscribe the cores: on two busy cores `watchkeeper train` took over 90 s instead of
18 s. So every process sets its pools from ``WATCHKEEPER_NUMERIC_THREADS``, in two ways,
because each covers what the other cannot:

- environment variables, read by each library when it is loaded: set before numpy or
  scikit-learn is imported, they apply to every thread of the process (request threads
  included) and are inherited by child processes (gunicorn workers);
- threadpoolctl at run time, for libraries a process loaded before it read its settings
  (the test runner, an application calling :func:`watchkeeper_cli.main.main`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from watchkeeper.settings import ENV_PREFIX, ProcessSettings

SETTING_VARIABLE = f"{ENV_PREFIX}NUMERIC_THREADS"

# The variables the libraries scikit-learn and numpy may load read at start-up.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that size every pool to ``threads``."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def threads_from_environment(environ: Mapping[str, str] = os.environ) -> int:
    """The setting alone, for a process that cannot build the whole settings object
    before its imports (the test runner). Falls back to the default if unset."""
    raw = environ.get(SETTING_VARIABLE, "").strip()
    if not raw:
        return int(ProcessSettings.model_fields["numeric_threads"].default)
    threads = int(raw)
    if threads < 1:
        raise ValueError(f"{SETTING_VARIABLE} must be at least 1, not {threads}")
    return threads


def limit_threads(threads: int, environ: MutableMapping[str, str] = os.environ) -> None:
    """Size this process's pools, and those of the processes it starts, to ``threads``.

    Overrides variables already set: the setting is the one place to choose.
    """
    environ.update(thread_environment(threads))
    from threadpoolctl import threadpool_limits

    # Only libraries loaded by now are affected; later ones read the variables above.
    threadpool_limits(limits=threads)


def thread_pools() -> dict[str, int]:
    """The largest pool of each kind loaded in this process, as the calling thread
    would use it: ``{"openmp": 1, "blas": 1}``. A kind not loaded yet is absent."""
    from threadpoolctl import threadpool_info

    pools: dict[str, int] = {}
    for pool in threadpool_info():
        api = str(pool["user_api"])
        pools[api] = max(pools.get(api, 0), int(pool["num_threads"]))
    return pools
