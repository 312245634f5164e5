"""The threads numpy's BLAS (OpenBLAS) uses for one call: one by default in ragcord's processes.

Its only call in ragcord is the SQLite store's exact vector search (a matrix-vector product over the
knowledge base's vectors), which reads memory rather than computes. OpenBLAS's threads spin for a while
after each call, waiting for the next one: during an ask they took the cores from the keyword search and
the model call that run beside and after the vector search. Measured with bench.ask's 100k chunks, 6
rounds of the fixture site's questions, one thread against OpenBLAS's two on the 2-core machine (same run,
interleaved): CPU per ask 96 -> 66 ms, p50 0.75x (docs/bench/ask.md).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# How numpy's OpenBLAS builds name the setter: the scipy-openblas wheels (numpy 2), plain and ILP64 builds.
_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (Linux; [] elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split(maxsplit=5)[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    return sorted(path for path in paths if path.startswith("/"))


def limit_threads(threads: int) -> bool:
    """Threads per BLAS call from now on, in this process (0: leave the library's own choice).

    False when no OpenBLAS setter was found (another BLAS, another system): nothing changed.
    """
    if threads <= 0:
        return False
    import numpy  # noqa: F401 - loads its BLAS, so the library is mapped

    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(threads)
                return True
    log.debug("no OpenBLAS found to set its threads; numpy's BLAS keeps its own")
    return False
