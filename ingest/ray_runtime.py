"""Connecting to Ray: a local instance by default, any cluster given RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

from docent.settings import Settings


def ensure_ray(settings: Settings) -> None:
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        # Quiet by default: docent draws its own progress bars and summary.
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        ray.init(
            address=settings.ray_address,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
        )
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
