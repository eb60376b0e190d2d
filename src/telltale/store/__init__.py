"""Storage: the only layer that holds SQL. DuckDB by default."""

from telltale.store.batches import BatchReport, BatchSource
from telltale.store.duck import Store, StoreError, StoreLockedError

__all__ = ["BatchReport", "BatchSource", "Store", "StoreError", "StoreLockedError"]
