"""SQL for log templates: the templates (`telltale_log_templates`) and which template each stored
log record has (`telltale_log_template_of`).

`telltale_log_template_of` is a side table rather than columns on `otel_logs`, so `otel_logs`
keeps exactly the Collector exporter's columns (plus BatchId) and a Collector-fed table can be
given templates without altering it. A record is found by (BatchId, Timestamp, BodyKey =
md5_number(Body)): identical records of one batch share all three, and they also share their
template and parameters (both are functions of the body within one assignment), so the key is
unambiguous where it matters. ServiceName and SeverityNumber are copied in so that template
analytics (counts, error share, services, first/last seen) read this table alone, no join.
"""

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

CREATE_OF = """
CREATE TABLE IF NOT EXISTS telltale_log_template_of (
    BatchId        INTEGER NOT NULL,
    Timestamp      BIGINT NOT NULL,
    BodyKey        UHUGEINT NOT NULL,   -- md5_number(otel_logs.Body)
    ServiceName    VARCHAR NOT NULL,
    SeverityNumber INTEGER NOT NULL,
    TemplateId     INTEGER NOT NULL,
    Params         VARCHAR[] NOT NULL   -- values of the template's <*> slots when assigned
)
"""

# Schema migration 2 (store/schema.py): both tables; the first may exist from before.
MIGRATION = [CREATE, CREATE_OF]

EXISTS = """
SELECT count(*) FROM information_schema.tables WHERE table_name = 'telltale_log_templates'
"""

LOAD = """
SELECT id, template, token_count, first_seen, last_seen, count
FROM telltale_log_templates ORDER BY id
"""

SIGNATURE = """
SELECT count(*), coalesce(max(id), 0), coalesce(sum(count), 0) FROM telltale_log_templates
"""

# Upsert: a template may widen (more <*>) and its counters grow; its id never changes.
UPSERT_VIEW = """
INSERT INTO telltale_log_templates (id, template, token_count, first_seen, last_seen, count)
SELECT id, template, token_count, first_seen, last_seen, count FROM tt_log_templates_view
ON CONFLICT (id) DO UPDATE SET
    template = excluded.template,
    first_seen = excluded.first_seen,
    last_seen = excluded.last_seen,
    count = excluded.count
"""

# The distinct bodies of some batches, oldest first (the order the miner sees them in).
BODIES = """
SELECT Body, count(*) AS n, min(Timestamp) AS first_ns, max(Timestamp) AS last_ns
FROM otel_logs WHERE BatchId BETWEEN $lo AND $hi AND list_contains($batches, BatchId)
GROUP BY Body ORDER BY first_ns, Body
"""

# Every record of those batches gets its body's template and parameters.
INSERT_OF = """
INSERT INTO telltale_log_template_of
SELECT l.BatchId, l.Timestamp, md5_number(l.Body), l.ServiceName, coalesce(l.SeverityNumber, 0),
    a.TemplateId, a.Params
FROM otel_logs l JOIN tt_log_assign_view a ON l.Body = a.Body
WHERE l.BatchId BETWEEN $lo AND $hi AND list_contains($batches, l.BatchId)
"""

DELETE_ALL_OF = "DELETE FROM telltale_log_template_of"

# Batches holding log records, and whether they have templates already.
LOG_BATCHES = """
SELECT l.BatchId, count(*) AS n
FROM otel_logs l
WHERE $all OR l.BatchId NOT IN (SELECT DISTINCT BatchId FROM telltale_log_template_of)
GROUP BY l.BatchId ORDER BY l.BatchId
"""

TEMPLATE_COUNT = "SELECT count(*) FROM telltale_log_templates"
