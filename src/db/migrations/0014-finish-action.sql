-- What the device does once a job has ended ok and its result is accepted (issue 12, "On the
-- device"): reboot (what /init always did), power off (a line that packs devices straight off the
-- jig), or wait with the activity LED steady on until a person unplugs it or orders more.
-- Only clients that poll with `features=…finish…` are told; others reboot as before.
ALTER TABLE jobs ADD COLUMN finish TEXT NOT NULL DEFAULT 'reboot' CHECK (finish IN ('reboot', 'poweroff', 'wait'));
-- A rule's finish for the jobs it orders; NULL: reboot.
ALTER TABLE rules ADD COLUMN finish TEXT CHECK (finish IN ('reboot', 'poweroff', 'wait'));
