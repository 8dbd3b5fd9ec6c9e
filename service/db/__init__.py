"""Async session pool: one SQLAlchemy engine per process, sessions only via `get_session()`."""

from service.db.base import Base
from service.db.engine import Database, connect_args

__all__ = ["Base", "Database", "connect_args"]
