-- A run keeps the messages its client sent (no longer the history rebuilt for the model): its
-- answer text is kept apart, so earlier turns are rebuilt without reading its result, and the
-- bytes of its input are counted for the per-user storage quota. Runs stored before keep working:
-- their answers and sizes are filled in here, and an input that holds a history ends the rebuild.
ALTER TABLE runs ADD COLUMN answer TEXT;
ALTER TABLE runs ADD COLUMN input_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET answer = json_extract(result, '$.text') WHERE json_valid(result);
UPDATE runs SET input_bytes = LENGTH(CAST(input AS BLOB));
CREATE INDEX threads_owner ON threads (owner);
