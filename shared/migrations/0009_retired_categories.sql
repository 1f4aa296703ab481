-- Categories are retired, never silently deleted: a retired category leaves the menus, the
-- home page and the sitemap; its page and feeds answer 410, or 301 to `redirect_to` when an
-- admin chose where its readers should go. Its articles stay where they are (their pages
-- keep working); new articles are refused in it. A category still named as another's target
-- cannot be deleted (the foreign key refuses it).
ALTER TABLE categories
    ADD COLUMN retired_at   timestamptz,
    ADD COLUMN redirect_to  integer REFERENCES categories(id),
    ADD CONSTRAINT categories_redirect_when_retired
        CHECK (redirect_to IS NULL OR (retired_at IS NOT NULL AND redirect_to <> id));
