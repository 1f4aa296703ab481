-- Visit counters: Redis counts every page view; these tables are its periodic (60 s) copy, from
-- which an emptied Redis is refilled. Redis stays the source of truth while it holds the total.

-- Site-wide counters: 'total' (human page views since the site began, including what an old
-- portal counted), and per-day history 'day:YYYY-MM-DD:views' / 'day:YYYY-MM-DD:visitors'.
CREATE TABLE counters (
    key         text PRIMARY KEY,
    value       bigint NOT NULL CHECK (value >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE article_views (
    article_id  bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
    views       bigint NOT NULL CHECK (views >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
