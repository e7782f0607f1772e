-- The profile of per-device files (0013) a rule's deploys write; NULL: none. A profile that is
-- deleted later makes the rule's order fail, and the device is held with that sentence.
ALTER TABLE rules ADD COLUMN profile TEXT;
