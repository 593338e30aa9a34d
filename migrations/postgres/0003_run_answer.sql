-- What the host keeps of a finished run beside its result: the answer's text (the thread's turn)
-- and the LLM requests it made.
ALTER TABLE runs ADD COLUMN answer TEXT;
ALTER TABLE runs ADD COLUMN llm_requests BIGINT;
