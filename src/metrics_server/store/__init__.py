"""Storage adapters. Each keeps the raw events and the rollups that core.Rollups is rebuilt from,
and writes a batch's plan in one transaction."""

from .base import BatchKey, LoadedState, Store, StoreError
from .sqlite import SQLiteStore

__all__ = ["BatchKey", "LoadedState", "SQLiteStore", "Store", "StoreError"]
