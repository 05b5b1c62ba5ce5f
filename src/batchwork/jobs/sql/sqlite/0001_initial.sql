-- batchwork SQLite schema, version 1. Times are integer microseconds since the Unix epoch
-- (UTC), computed in Python; durations are float seconds.

CREATE TABLE batchwork_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a purged id is never reused
    name TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('job', 'cron_task')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'paused', 'finished',
        'errored', 'cancelled', 'timed_out', 'crashed', 'skipped', 'missed')),
    payload TEXT NOT NULL,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    tag TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    conflict_id INTEGER,
    scheduled_for INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL,
    duration REAL,
    unique_key TEXT,
    resumable INTEGER NOT NULL DEFAULT 0,
    max_crashes INTEGER NOT NULL DEFAULT 3,
    crashes INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- private columns: the current lease, when and from which status the current run was
    -- claimed (release restores it), the cron tick time (kept when a retry moves
    -- scheduled_for) and the on_exit hook's state.
    lease TEXT,
    claimed_at INTEGER,
    claimed_from TEXT,
    tick_at INTEGER,
    exit_hook TEXT NOT NULL DEFAULT 'none'
        CHECK (exit_hook IN ('none', 'due', 'taken', 'done')),
    exit_hook_worker TEXT
);

-- Claims walk this index in claim order and stop at LIMIT; only claimable rows are in it.
CREATE INDEX batchwork_jobs_due ON batchwork_jobs (priority DESC, scheduled_for, id)
    WHERE status IN ('pending', 'paused');

CREATE UNIQUE INDEX batchwork_jobs_unique_key ON batchwork_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running', 'paused');

CREATE UNIQUE INDEX batchwork_jobs_cron_tick ON batchwork_jobs (name, tick_at)
    WHERE tick_at IS NOT NULL;

-- Exclusive checks (status IN active AND name = ?), running jobs per worker (recovery,
-- the workers list) and counts (a covering scan). Only this one and the due index hold
-- every pending row, on purpose: each index on a pending row costs every enqueue, claim
-- and completion.
CREATE INDEX batchwork_jobs_status_name ON batchwork_jobs (status, name);

CREATE INDEX batchwork_jobs_exit_hook ON batchwork_jobs (name, id)
    WHERE exit_hook IN ('due', 'taken');

CREATE INDEX batchwork_jobs_ended ON batchwork_jobs (ended_at)
    WHERE ended_at IS NOT NULL;


-- Every status change the store may write (batchwork.jobs._model.ALLOWED_TRANSITIONS; a
-- test keeps the two equal). The trigger refuses any other, whatever SQL tries it.
CREATE TABLE batchwork_transitions (
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    PRIMARY KEY (old, new)
) WITHOUT ROWID;

INSERT INTO batchwork_transitions (old, new) VALUES
    ('pending', 'running'), ('pending', 'cancelled'),
    ('paused', 'running'), ('paused', 'cancelled'),
    ('running', 'pending'), ('running', 'paused'), ('running', 'finished'),
    ('running', 'errored'), ('running', 'cancelled'), ('running', 'timed_out'),
    ('running', 'crashed'),
    ('finished', 'pending'), ('errored', 'pending'), ('cancelled', 'pending'),
    ('timed_out', 'pending'), ('crashed', 'pending'), ('skipped', 'pending'),
    ('missed', 'pending');

CREATE TRIGGER batchwork_jobs_transition BEFORE UPDATE OF status ON batchwork_jobs
    WHEN NEW.status <> OLD.status AND NOT EXISTS (
        SELECT 1 FROM batchwork_transitions WHERE old = OLD.status AND new = NEW.status)
BEGIN
    SELECT RAISE(ABORT, 'batchwork: illegal job status transition');
END;

CREATE TABLE batchwork_workers (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    tags TEXT,  -- JSON list, or NULL for "every job"
    concurrency INTEGER NOT NULL,
    lease_timeout REAL NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE batchwork_crons (
    name TEXT PRIMARY KEY,
    expression TEXT NOT NULL,
    timezone TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
