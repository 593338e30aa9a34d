-- A run keeps the messages its client sent (no longer the history rebuilt for the model): its
-- answer text is kept apart, so earlier turns are rebuilt without reading its result, and the
-- bytes of its input are counted for the per-user storage quota. Runs stored before keep working:
-- their answers and sizes are filled in here, and an input that holds a history ends the rebuild.
ALTER TABLE runs ADD COLUMN answer TEXT;
ALTER TABLE runs ADD COLUMN input_bytes BIGINT NOT NULL DEFAULT 0;
-- jsonb refuses an escaped NUL; such a result leaves its answer empty.
UPDATE runs SET answer = result::jsonb ->> 'text'
    WHERE result IS NOT NULL AND result NOT LIKE '%\u0000%';
UPDATE runs SET input_bytes = octet_length(input);
CREATE INDEX threads_owner ON threads (owner);
