-- The eMMC's CID register as the device's kernel reports it (32 lower-case hex digits, from
-- /sys/block/mmcblkN/device/cid): it names the eMMC chip itself (maker, product, serial, date).
-- Decoded when shown (src/records/emmc-cid.ts), so a better decoder needs no migration.
ALTER TABLE devices ADD COLUMN emmc_cid TEXT;
-- Device records group a device's MACs under its serial (a carrier board swap changes the MAC,
-- not the module): this index serves that grouping and the lookup of a record by serial.
CREATE INDEX devices_by_serial ON devices(serial);
