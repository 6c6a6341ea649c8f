-- junction centre, migration 2: received_at is the time the row was written (clock_timestamp()), not
-- the start of its transaction (now()), so that ingest lag (received_at minus the time the box
-- published) includes the batch's own write.
ALTER TABLE reports ALTER COLUMN received_at SET DEFAULT clock_timestamp();
ALTER TABLE events ALTER COLUMN received_at SET DEFAULT clock_timestamp();
ALTER TABLE detector_events ALTER COLUMN received_at SET DEFAULT clock_timestamp();
ALTER TABLE box_status ALTER COLUMN received_at SET DEFAULT clock_timestamp();
ALTER TABLE dead_letters ALTER COLUMN received_at SET DEFAULT clock_timestamp();
