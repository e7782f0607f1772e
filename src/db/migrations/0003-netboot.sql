-- Netboot: each device's boot policy and last boot stage, the dnsmasq events behind it, and
-- what a job's device should boot after it succeeds.

ALTER TABLE devices ADD COLUMN netboot_enabled INTEGER NOT NULL DEFAULT 1;
ALTER TABLE devices ADD COLUMN boot_stage TEXT;
ALTER TABLE devices ADD COLUMN boot_stage_at INTEGER;
-- NULL for a device seen only by DHCP/TFTP, whose provisioning client has not registered yet.
ALTER TABLE devices ADD COLUMN registered_at INTEGER;
UPDATE devices SET registered_at = first_seen_at;

CREATE TABLE boot_events (
  id   INTEGER PRIMARY KEY,
  mac  TEXT NOT NULL,
  at   INTEGER NOT NULL,
  kind TEXT NOT NULL,
  ip   TEXT,
  file TEXT
);
CREATE INDEX boot_events_by_mac ON boot_events(mac, id);

ALTER TABLE jobs ADD COLUMN after_success TEXT NOT NULL DEFAULT 'emmc' CHECK (after_success IN ('emmc', 'netboot'));
