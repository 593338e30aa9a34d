-- Each start of a run writes a token of its own; its events, finish and cut are written only
-- while the run row holds that token, so no write can attach to a run this start did not make.
ALTER TABLE runs ADD COLUMN start_token TEXT;
-- `/readyz` writes its process's row here and reads it back from a second connection.
CREATE TABLE probe (id TEXT PRIMARY KEY, nonce TEXT NOT NULL, at BIGINT NOT NULL);
