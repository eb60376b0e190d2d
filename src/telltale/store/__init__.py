"""Storage: the only layer that holds SQL. DuckDB by default."""

from telltale.store.duck import BatchReport, BatchSource, Store, StoreError, StoreLockedError

__all__ = ["BatchReport", "BatchSource", "Store", "StoreError", "StoreLockedError"]
