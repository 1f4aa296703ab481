-- The first schema: categories, articles, photos and their renditions, tokens, idempotency keys.
-- Times are timestamptz (stored in UTC); text is NFC, written by the application.

CREATE TABLE categories (
    id          serial PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name        text NOT NULL,
    position    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id            serial PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('submitter', 'admin')),
    -- SHA-256 of the token: tokens are 256-bit random values, so a fast hash is enough and
    -- lets every request be authenticated with one indexed lookup.
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE articles (
    id             bigserial PRIMARY KEY,
    uuid           uuid NOT NULL UNIQUE,
    slug           text NOT NULL,
    category_id    integer NOT NULL REFERENCES categories(id),
    title          text NOT NULL,
    summary        text NOT NULL DEFAULT '',
    body_source    text NOT NULL DEFAULT '',
    body_format    text NOT NULL DEFAULT 'html' CHECK (body_format IN ('html', 'markdown', 'text')),
    body_html      text NOT NULL DEFAULT '',
    author         text NOT NULL DEFAULT '',
    unit           text NOT NULL DEFAULT '',
    tags           text[] NOT NULL DEFAULT '{}',
    gallery_title  text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'processing'
                   CHECK (status IN ('processing', 'scheduled', 'published', 'failed', 'unpublished')),
    error          text,
    published_at   timestamptz,
    -- Folded (lowercase, no diacritics, one tone habit) text for search; see shared/text.py.
    search_text    text NOT NULL DEFAULT '',
    submitted_by   integer REFERENCES tokens(id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    version        integer NOT NULL DEFAULT 1
);
-- Readers' listings and feeds read the newest published first; these keep that cost independent
-- of how many articles the site holds.
CREATE INDEX articles_published ON articles (published_at DESC, id DESC) WHERE status = 'published';
CREATE INDEX articles_category_published ON articles (category_id, published_at DESC, id DESC)
    WHERE status = 'published';
CREATE INDEX articles_pending ON articles (status, updated_at) WHERE status IN ('processing', 'scheduled');
CREATE INDEX articles_search ON articles USING gin (to_tsvector('simple', search_text));

CREATE TABLE images (
    id           bigserial PRIMARY KEY,
    article_id   bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    position     integer NOT NULL,
    part         text NOT NULL,
    caption      text NOT NULL DEFAULT '',
    role         text NOT NULL CHECK (role IN ('inline', 'cover', 'gallery')),
    sha256       text NOT NULL,
    format       text NOT NULL,
    bytes        bigint NOT NULL,
    width        integer,
    height       integer,
    placeholder  text,
    error        text,
    rendered_at  timestamptz,
    UNIQUE (article_id, position),
    UNIQUE (article_id, part)
);

CREATE TABLE renditions (
    image_id  bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    width     integer NOT NULL,
    height    integer NOT NULL,
    format    text NOT NULL CHECK (format IN ('jpeg', 'png', 'webp', 'avif')),
    path      text NOT NULL,
    bytes     bigint NOT NULL,
    PRIMARY KEY (image_id, width, format)
);

CREATE TABLE idempotency_keys (
    token_id      integer NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    -- NULL while the first request is still running.
    status        integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Small facts about this installation (whether the demo content was loaded, ...).
CREATE TABLE site_meta (
    key    text PRIMARY KEY,
    value  jsonb NOT NULL
);
