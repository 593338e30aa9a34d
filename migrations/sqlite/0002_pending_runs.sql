-- Runs made by the soliplex routes are stored when made, `pending` until started, with the
-- metadata their client gave them (JSON text).
ALTER TABLE runs ADD COLUMN metadata TEXT;
