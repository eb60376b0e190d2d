"""Storage: the only layer that holds SQL. DuckDB by default."""

from telltale.store.duck import BatchReport, Store, StoreLockedError

__all__ = ["BatchReport", "Store", "StoreLockedError"]
