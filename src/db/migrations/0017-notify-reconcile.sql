-- Notify's reconciliation at start (src/notify/reconcile.ts) finds job events that have no outbox
-- row, looking only at jobs that changed lately. A job's last change is its latest timestamp:
-- ended_at, else started_at, else created_at (each is set once, in that order).
CREATE INDEX jobs_by_last_change ON jobs (coalesce(ended_at, started_at, created_at));

-- When labels were last switched on, or backups added to them: an ok job that ended since then
-- and has no label row gets one at the next start. Settings already on count from this upgrade.
ALTER TABLE label_settings ADD COLUMN enabled_at INTEGER;
UPDATE label_settings SET enabled_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE enabled = 1;
