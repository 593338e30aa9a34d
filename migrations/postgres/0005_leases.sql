-- Replicas: each process holds a lease it renews; a running run names the process running it
-- (`instance`), and a cancel asked of another process is left on the run for its owner.
CREATE TABLE leases (
    instance TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
ALTER TABLE runs ADD COLUMN instance TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
