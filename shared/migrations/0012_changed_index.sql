-- Every article change moves updated_at (a publication, an edit, a withdrawal, an import's
-- insert). Beat's sweep reads the changes since its last look by this index, to find feeds and
-- pages left stale when the message that should have refreshed them was lost (Redis away
-- just after a commit), without reading the table.
CREATE INDEX articles_updated_at ON articles (updated_at);
