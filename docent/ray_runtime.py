"""Connecting to Ray: a local instance by default, any cluster given RAY_ADDRESS."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from docent.settings import Settings


def ensure_ray(settings: Settings) -> None:
    """Connect (or start local Ray) once per process. Call it from the main thread:
    Ray's local node processes die with the thread that started them."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        # Quiet by default: docent draws its own progress bars and summary. Set
        # RAY_BACKEND_LOG_LEVEL=info to see Ray's own messages again.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        with _stderr_without(_LEVEL_NOTICE):
            ray.init(
                address=settings.ray_address,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
                configure_logging=True,
            )
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def cluster_hosts() -> set[str]:
    """The addresses of the live nodes of the connected cluster: one for nodes that share a machine."""
    import ray

    return {node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")}


# What Ray's C++ logger prints on stderr, whatever the level, whenever RAY_BACKEND_LOG_LEVEL is set.
_LEVEL_NOTICE = "Set ray log level from environment variable"


@contextmanager
def _stderr_without(notice: str) -> Iterator[None]:
    """Standard error (the file descriptor: C++ writes there) kept, except lines holding `notice`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True) if notice not in line]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
