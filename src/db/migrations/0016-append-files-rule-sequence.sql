-- Per-device files (0013), two additions of issue 12.

-- A file may be appended to the image's existing one instead of replacing it: 'end' (at its end)
-- or 'first_line' (to its first line, one space between: cmdline.txt, which the Raspberry Pi
-- firmware reads as one line). NULL: the file is written whole. Its sha256 and length are then of
-- the appended text; read_back_length is the length of the whole file the device read back.
ALTER TABLE job_files ADD COLUMN append TEXT CHECK (append IN ('end', 'first_line'));
ALTER TABLE job_files ADD COLUMN read_back_length INTEGER;

-- {{rule_sequence}}: each device a rule takes on gets the rule's next number (1, 2, …), kept
-- with what the rule remembers of it, so a retry or a provision-again renders the same number.
-- Numbers are not given again: a released device that the rule takes on again gets a new one.
ALTER TABLE rules ADD COLUMN devices_numbered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rule_devices ADD COLUMN sequence INTEGER;
-- Devices a rule took on before this migration are numbered in the order they were stored.
UPDATE rule_devices SET sequence = (
  SELECT count(*) FROM rule_devices AS earlier WHERE earlier.rule_id = rule_devices.rule_id AND earlier.rowid <= rule_devices.rowid
);
UPDATE rules SET devices_numbered = (SELECT coalesce(max(sequence), 0) FROM rule_devices WHERE rule_id = rules.id);
