"""The threads numpy's BLAS uses for one call: one by default in ragcord's processes.

Its only call in ragcord is the SQLite store's exact vector search (a matrix-vector product over the
knowledge base's vectors), which reads memory rather than computes. OpenBLAS's threads spin for a while
after each call, waiting for the next one: during an ask they took the cores from the keyword search and
the model call that run beside and after the vector search. Measured with bench.ask's 100k chunks, 6
rounds of the fixture site's questions, one thread against OpenBLAS's two on the 2-core machine (same run,
interleaved): CPU per ask 96 -> 66 ms, p50 0.75x (docs/bench/ask.md).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def limit_threads(threads: int) -> bool:
    """Threads per BLAS call from now on, in this process (0: leave the library's own choice).

    False when numpy loaded no BLAS that threadpoolctl knows: nothing changed.
    """
    if threads <= 0:
        return False
    import numpy  # noqa: F401 - loads its BLAS, so threadpoolctl finds it
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(library["user_api"] == "blas" for library in threadpool_info()):
        log.debug("no BLAS found to set its threads; numpy's BLAS keeps its own")
        return False
    threadpool_limits(limits=threads, user_api="blas")  # for the process: the limit is not undone
    return True
