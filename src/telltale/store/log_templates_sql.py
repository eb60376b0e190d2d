"""SQL for the persisted log templates (`telltale_log_templates`).

The table is created on demand by the writer (CREATE TABLE IF NOT EXISTS) rather than by a
store migration, so the template miner can be adopted without bumping the schema version."""

from __future__ import annotations

CREATE = """
CREATE TABLE IF NOT EXISTS telltale_log_templates (
    id          INTEGER PRIMARY KEY,  -- stable: assigned once, never renumbered
    template    VARCHAR NOT NULL,     -- tokens joined by spaces; <*> is a parameter
    token_count INTEGER NOT NULL,     -- length of the masked lines it was built from
    first_seen  BIGINT,               -- ns UTC of the first matching record (NULL: unknown)
    last_seen   BIGINT,
    count       BIGINT NOT NULL
)
"""

EXISTS = """
SELECT count(*) FROM information_schema.tables WHERE table_name = 'telltale_log_templates'
"""

LOAD = """
SELECT id, template, token_count, first_seen, last_seen, count
FROM telltale_log_templates ORDER BY id
"""

# Upsert: a template may widen (more <*>) and its counters grow; its id never changes.
UPSERT = """
INSERT INTO telltale_log_templates (id, template, token_count, first_seen, last_seen, count)
VALUES ($id, $template, $token_count, $first_seen, $last_seen, $count)
ON CONFLICT (id) DO UPDATE SET
    template = excluded.template,
    first_seen = excluded.first_seen,
    last_seen = excluded.last_seen,
    count = excluded.count
"""
