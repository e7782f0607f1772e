-- Zero-touch rules (src/rules/): an ordered list; the first that matches a device with no
-- active job acts on it. Match fields left NULL match any device.
CREATE TABLE rules (
  id               INTEGER PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  position         INTEGER NOT NULL,             -- 1 is tried first
  enabled          INTEGER NOT NULL DEFAULT 1,
  match_mac        TEXT,                         -- glob (* ?) or prefix, lower-case colon form
  match_serial     TEXT,                         -- JSON array of globs; any may match
  match_model      TEXT,                         -- text the model must contain (any case)
  min_emmc_bytes   INTEGER,
  max_emmc_bytes   INTEGER,
  match_holds_image INTEGER,                     -- 1/0: the device does/does not hold a verified deploy of the image
  action           TEXT NOT NULL CHECK (action IN ('deploy', 'backup_deploy', 'backup', 'hold')),
  image            TEXT,                         -- image name; NULL: the default image
  after_success    TEXT CHECK (after_success IN ('emmc', 'netboot')),  -- NULL: the server's default
  full_match       INTEGER NOT NULL DEFAULT 0,
  max_devices      INTEGER,                      -- NULL: no limit
  retries          INTEGER NOT NULL DEFAULT 0,
  provision_again  INTEGER NOT NULL DEFAULT 0,   -- 1: acts again on each new registration after an ok
  created_at       INTEGER NOT NULL
);

-- What a rule has done with a device, so that "never loops" and "retry, then hold" hold across
-- restarts. No foreign key to devices: a forgotten device must not be kept by a rule's memory.
CREATE TABLE rule_devices (
  rule_id     INTEGER NOT NULL REFERENCES rules(id) ON DELETE CASCADE,
  device_mac  TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('working', 'provisioned', 'held')),
  attempts    INTEGER NOT NULL DEFAULT 0,        -- jobs ordered for the current work (backup + deploy count once)
  last_job_id INTEGER,
  reason      TEXT,                              -- why it is held
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (rule_id, device_mac)
);
CREATE INDEX rule_devices_by_device ON rule_devices(device_mac);

-- Who ordered each job. The rule's name is kept, so history still says which rule it was after
-- the rule is deleted (rule_id is then a dangling number, on purpose: no cascade into history).
ALTER TABLE jobs ADD COLUMN ordered_by TEXT NOT NULL DEFAULT 'operator' CHECK (ordered_by IN ('operator', 'rule'));
ALTER TABLE jobs ADD COLUMN rule_id INTEGER;
ALTER TABLE jobs ADD COLUMN rule_name TEXT;
