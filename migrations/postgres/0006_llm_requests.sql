-- The LLM requests a finished run had answered (soliplex's run usage), kept beside its result.
ALTER TABLE runs ADD COLUMN llm_requests BIGINT;
