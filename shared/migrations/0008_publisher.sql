-- Photos publish in two stages (shared/photos/render.py): `rendered_at` is when a photo has
-- what a first page view needs (one JPEG or PNG and one WebP width); `completed_at` when the
-- rest (AVIF, every other width) has landed too. Photos rendered before had everything.
ALTER TABLE images ADD COLUMN completed_at timestamptz;
UPDATE images SET completed_at = rendered_at WHERE rendered_at IS NOT NULL;
