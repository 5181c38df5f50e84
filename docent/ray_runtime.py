"""Connecting to Ray: a local instance by default, any cluster given RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

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
