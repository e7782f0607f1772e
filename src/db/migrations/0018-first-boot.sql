-- Issue 13, "Done means it booted": a deploy may ask for first-boot confirmation. Its one-time
-- token is made when the deploy is ordered (the per-device files, rendered then, carry it to the
-- installed OS's hook); only its sha256 is kept. When the job ends ok the first boot is awaited
-- until boot_deadline_at; the hook's call confirms it, the watchdog marks it not confirmed.
ALTER TABLE jobs ADD COLUMN boot_confirm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN boot_confirm_timeout_s INTEGER;
ALTER TABLE jobs ADD COLUMN boot_token_hash TEXT;
ALTER TABLE jobs ADD COLUMN boot_state TEXT CHECK (boot_state IN ('awaiting', 'confirmed', 'not_confirmed', 'superseded'));  -- superseded: a newer job for the device was ordered while it was awaited
ALTER TABLE jobs ADD COLUMN boot_deadline_at INTEGER;
ALTER TABLE jobs ADD COLUMN boot_confirmed_at INTEGER;
ALTER TABLE jobs ADD COLUMN boot_report TEXT;  -- JSON: serial, mac, os_release, kernel
CREATE UNIQUE INDEX jobs_by_boot_token ON jobs (boot_token_hash) WHERE boot_token_hash IS NOT NULL;
CREATE INDEX jobs_awaiting_boot ON jobs (boot_deadline_at) WHERE boot_state = 'awaiting';

-- New rules ask for it unless told not to (the API's default); rules made before this upgrade do
-- not, so a line that worked keeps working until a person turns it on. NULL timeout: 600 s.
ALTER TABLE rules ADD COLUMN confirm_boot INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN confirm_timeout INTEGER;

-- The hook the deploy writes into the image (src/first-boot/hook-files.ts): 'cmdline' (the boot
-- partition at /boot/firmware), 'cmdline-boot' (at /boot, images before Bookworm) or 'none' (the
-- profile carries its own). NULL on a rule: 'cmdline'.
ALTER TABLE jobs ADD COLUMN boot_hook TEXT CHECK (boot_hook IN ('cmdline', 'cmdline-boot', 'none'));
ALTER TABLE rules ADD COLUMN first_boot_hook TEXT CHECK (first_boot_hook IN ('cmdline', 'cmdline-boot', 'none'));

-- The base URL a device's client last reached this server at: without --public-url, the hook
-- calls back there (the installed OS comes up on the same network).
ALTER TABLE devices ADD COLUMN server_url TEXT;
