"""The workspace database: plain SQLite that any tool can open (database.py), its named, frozen migrations
(migrations.py) and the metric rollups kept by triggers (rollups.py)."""

from misalign_tui.core.store.database import (
    BUSY_TIMEOUT_MS,
    NOW,
    RUN_SQL,
    BenchmarkInfo,
    RunInfo,
    Store,
    check_database,
    connect,
    content_hash,
    database_error,
    last_id,
    run_info,
)
from misalign_tui.core.store.migrations import SCHEMA_VERSION
from misalign_tui.core.store.rollups import rebuild_rollups

__all__ = ["BUSY_TIMEOUT_MS", "NOW", "RUN_SQL", "SCHEMA_VERSION", "BenchmarkInfo", "RunInfo", "Store", "check_database", "connect", "content_hash",
           "database_error", "last_id", "rebuild_rollups", "run_info"]
