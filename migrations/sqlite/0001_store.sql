-- Threads, runs, their events and feedback. Times are Unix milliseconds; JSON is kept as text.
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    name TEXT,
    description TEXT
);
CREATE INDEX threads_room_created ON threads (room, created DESC, id DESC);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    parent_run_id TEXT,
    created INTEGER NOT NULL,
    finished INTEGER,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    result TEXT,
    usage TEXT,
    events_cut INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_thread ON runs (thread_id, created);
CREATE INDEX runs_status ON runs (status);

CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX feedback_run ON feedback (run_id);
