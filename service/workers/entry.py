"""What each server worker process runs: settings read in the worker, then `create_app`."""

from __future__ import annotations

import os

from fastapi import FastAPI

from service.app import create_app
from service.config import load_settings
from service.logging import configure_logging
from service.workers import WORKER_COUNT_ENV


def create_worker_app() -> FastAPI:
    """uvicorn factory: the supervisor already validated settings and sized the pool."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings, worker_count=int(os.environ.get(WORKER_COUNT_ENV, "1")))
