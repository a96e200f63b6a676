-- Batch engine bookkeeping per provider batch (part): progress counts reported by the provider
-- (replaced by item counts once collected), why a part failed, and when it was collected.
-- DuckDB cannot add a column with a NOT NULL constraint: defaults stand in for it.

ALTER TABLE batch_parts ADD COLUMN completed_count BIGINT DEFAULT 0;
ALTER TABLE batch_parts ADD COLUMN failed_count BIGINT DEFAULT 0;
ALTER TABLE batch_parts ADD COLUMN error_message VARCHAR;
ALTER TABLE batch_parts ADD COLUMN collected_at TIMESTAMP;
