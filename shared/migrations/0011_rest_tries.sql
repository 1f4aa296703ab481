-- How many times a photo's other renditions (render_rest) were started: one killed at the
-- hard time limit each time, or with its worker, is completed without them after a few tries
-- instead of being sent again by beat's sweep forever.
ALTER TABLE images ADD COLUMN rest_tries integer NOT NULL DEFAULT 0;
