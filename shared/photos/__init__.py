"""Photos, from upload to page, in the order of a photo's trip:

- probe.py: what ingest decides from an upload's first bytes (format, size, pixel count);
- store.py: where originals and renditions are kept (MediaStore, content-addressed files);
- render.py: the renditions made by libvips (JPEG, WebP and AVIF widths, a placeholder);
- markup.py: what readers get (the lead photo, <picture> views, <img> for feed readers).

The Celery tasks that run render.py are in workers/photos.py; the publisher serves the files
(services/publisher/media.py) and draws the views with its `picture` macro.
"""
