-- The readers' site: what admins edit over the API (the sidebar's link blocks), and search.

-- Site settings, one JSON document per key ('link_blocks': the sidebar's blocks of links).
-- `version` is the document's ETag, so two admins never overwrite each other unknowingly.
CREATE TABLE site_settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  integer REFERENCES tokens(id)
);

-- The folded text's words, stored: search and related news rank by it, and computing
-- to_tsvector() from a whole body at query time costs seconds once a few thousand articles
-- match a common word (an expression index helps the matching, never the ranking nor the
-- recheck). The application writes search_text; PostgreSQL keeps this column in step.
ALTER TABLE articles ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED;
CREATE INDEX articles_search_vector ON articles USING gin (search_vector)
    WHERE status = 'published';
-- The expression index it replaces: only the readers' site searched, and it now reads the
-- stored column.
DROP INDEX IF EXISTS articles_search;
