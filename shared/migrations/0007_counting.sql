-- A day's unique visitors are a HyperLogLog in Redis: its bytes are copied beside the day's
-- figure, so that an emptied Redis gets the day's visitors back, not a count restarting at 0.
ALTER TABLE counters ADD COLUMN sketch bytea;
