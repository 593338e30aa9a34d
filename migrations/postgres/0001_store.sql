-- Threads, runs, their events and feedback. Times are Unix milliseconds; JSON is kept as text.
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    name TEXT,
    description TEXT
);
CREATE INDEX threads_room_created ON threads (room, created DESC, id DESC);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    parent_run_id TEXT,
    created BIGINT NOT NULL,
    finished BIGINT,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    result TEXT,
    usage TEXT,
    events_cut BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_thread ON runs (thread_id, created);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE feedback (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX feedback_run ON feedback (run_id);
