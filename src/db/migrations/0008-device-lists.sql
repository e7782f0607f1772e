-- Device lists are paged in one stable order (first seen, then MAC): this index serves that
-- order, its cursor and the "new since" count without sorting the whole table.
CREATE INDEX devices_by_first_seen ON devices(first_seen_at, mac);
-- The age-out sweep looks for devices not seen since a cut-off.
CREATE INDEX devices_by_last_seen ON devices(last_seen_at);
