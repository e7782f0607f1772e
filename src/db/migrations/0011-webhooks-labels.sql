-- Webhooks and labels (src/notify/). Every job event and every label is first written here, in
-- the same process turn as the job change, and only then sent: a restart loses nothing.
CREATE TABLE webhooks (
  id INTEGER PRIMARY KEY,
  url TEXT NOT NULL,
  -- The HMAC-SHA256 key; shown once when the webhook is made, never listed.
  secret TEXT NOT NULL,
  -- JSON array of event names it receives (job.queued, job.ok, ...).
  events TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

-- One row per thing to send: a webhook's event (webhook_id set) or a label (webhook_id NULL,
-- target = where it goes: tcp://host:port or a spool folder, as set when it was queued).
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY,
  webhook_id INTEGER REFERENCES webhooks(id) ON DELETE CASCADE,
  event TEXT NOT NULL,
  job_id INTEGER NOT NULL,
  target TEXT,
  body TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_attempt_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  delivered_at INTEGER,
  created_at INTEGER NOT NULL
);
-- Each job event reaches each webhook once, and a job prints one label by itself (reprints are
-- 'label.reprint' and may repeat).
CREATE UNIQUE INDEX outbox_once ON outbox (coalesce(webhook_id, 0), job_id, event) WHERE event <> 'label.reprint';
CREATE INDEX outbox_pending ON outbox (coalesce(webhook_id, 0), id) WHERE state = 'pending';
CREATE INDEX outbox_by_webhook ON outbox (webhook_id, id);
CREATE INDEX outbox_by_job ON outbox (job_id, event);

-- The label printer: one row.
CREATE TABLE label_settings (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  enabled INTEGER NOT NULL DEFAULT 0,
  template TEXT,
  -- tcp://host:port (a printer's raw port) or an absolute folder path (a spool folder).
  output TEXT,
  -- 1: backups that end ok print a label too (deploys always do).
  backups INTEGER NOT NULL DEFAULT 0
);
INSERT INTO label_settings (id) VALUES (1);
