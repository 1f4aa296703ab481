-- The newsroom desk: people who sign in, the tokens they act through, review, and each
-- article's history.

CREATE TABLE accounts (
    id             serial PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,39}$'),
    display_name   text NOT NULL DEFAULT '',
    -- argon2id, in the PHC string format (the parameters travel with the hash).
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('submitter', 'editor', 'admin')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- `editor` publishes, edits and reviews anyone's articles.
ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check CHECK (role IN ('submitter', 'editor', 'admin'));
-- Tokens made in the desk (and the one the desk itself acts through) belong to an account.
ALTER TABLE tokens ADD COLUMN account_id integer REFERENCES accounts(id);
-- The desk's own token: never shown to anyone, so `desk` marks it apart from the account's
-- API tokens.
ALTER TABLE tokens ADD COLUMN desk boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX tokens_desk ON tokens (account_id) WHERE desk;

-- Review (BANTIN_REVIEW=on): submitters' articles wait as `pending`; an editor approves them
-- or returns them with a note (`returned`; the note is in article_events).
ALTER TABLE articles DROP CONSTRAINT articles_status_check;
ALTER TABLE articles ADD CONSTRAINT articles_status_check CHECK (status IN (
    'pending', 'returned', 'processing', 'scheduled', 'published', 'failed', 'unpublished'));

-- Who did what to an article, and when.
CREATE TABLE article_events (
    id          bigserial PRIMARY KEY,
    article_id  bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    token_id    integer REFERENCES tokens(id),
    action      text NOT NULL CHECK (action IN (
                    'submitted', 'edited', 'resubmitted', 'approved', 'returned', 'unpublished')),
    note        text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX article_events_article ON article_events (article_id, id);
-- The desk's list: newest first, per submitting token.
CREATE INDEX articles_desk_submitted ON articles (submitted_by, id DESC);
