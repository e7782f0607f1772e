-- Issue 14, "Fast at scale": where a job spends its time. phase_ms sums, per phase the device
-- reported (writing, verifying, uploading, ...), the milliseconds between the report that began
-- it and the one that left it (or the job's end); phase_started_at is when the current one began.
ALTER TABLE jobs ADD COLUMN phase_ms TEXT;  -- JSON object: phase → milliseconds
ALTER TABLE jobs ADD COLUMN phase_started_at INTEGER;
