-- Every article change moves updated_at (a publication, an edit, a withdrawal, an import's or
-- a batch's insert; a restore keeps the backup's times). Beat's sweep reads the changes since
-- its last look by this index, to find feeds and pages left stale when the message that should
-- have refreshed them was lost (Redis away just after a commit), without reading the table.
-- Built in the upgrade's transaction: writes to articles wait for it, about a second per
-- million articles.
CREATE INDEX articles_updated_at ON articles (updated_at);
