-- Moving in and out (bantin import / export): old links that keep working, and what each import
-- source has already brought in, so that a second run adds nothing and an interrupted one
-- continues where it stopped.

-- An old address (path, with its query when it matters: "/?p=123") answered with 301. Either an
-- article (its current address is computed at answer time, so a later edit of its title or
-- category never breaks the link) or a fixed path (`bantin redirects load`).
CREATE TABLE redirects (
    old_path    text PRIMARY KEY CHECK (old_path LIKE '/%'),
    article_id  bigint REFERENCES articles(id) ON DELETE CASCADE,
    new_path    text CHECK (new_path LIKE '/%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((article_id IS NULL) <> (new_path IS NULL))
);
CREATE INDEX redirects_article ON redirects (article_id) WHERE article_id IS NOT NULL;

-- One row per item an import brought in, written in the same transaction as the article: the
-- item is either wholly imported or not at all. `source` names the origin ("wordpress:" and
-- the old site's address, "feed:" and the feed's, "bantin:" and the exported site's);
-- `item` its identifier there (a WordPress post id, a feed entry's id, an article's uuid).
-- `problems` keeps what could not come along (a photo that answered 404). An article deleted
-- after its import keeps its row (article_id NULL): the next run of that source does not bring
-- it back; a restore, which knows articles by their uuid, does.
CREATE TABLE import_items (
    source       text NOT NULL,
    item         text NOT NULL,
    article_id   bigint REFERENCES articles(id) ON DELETE SET NULL,
    problems     text[] NOT NULL DEFAULT '{}',
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, item)
);
