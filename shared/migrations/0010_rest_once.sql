-- A photo's other renditions (render_rest, workers/photos.py) are sent once, not once per sweep:
-- `rest_queued_at` is when they were last sent or started, and beat's sweep sends them again
-- only when that is older than a render can last. `rest_error` says why a completed photo
-- lacks some of them (too slow even when tried again later): the photo shows with what its
-- first stage made, unlike one with `error`, which is not shown at all.
ALTER TABLE images
    ADD COLUMN rest_queued_at timestamptz,
    ADD COLUMN rest_error     text;
-- What the sweep looks for every 30 s: the few photos whose rest is not complete.
CREATE INDEX images_rest_pending ON images (id) WHERE completed_at IS NULL AND error IS NULL;
