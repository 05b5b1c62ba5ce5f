-- batchwork PostgreSQL schema, version 1. Run with search_path set to the store's schema.
--
-- Two job tables with the same columns: `jobs` holds only active jobs (pending, running,
-- paused), so the claim index stays small however much history accumulates; a job that
-- ends is moved to `job_history` in the transaction that ends it. Both draw ids from one
-- sequence, so an id names one job wherever it lives.

CREATE SEQUENCE job_id_seq;

CREATE TABLE jobs (
    id               bigint PRIMARY KEY DEFAULT nextval('job_id_seq'),
    name             text NOT NULL,
    type             text NOT NULL,
    status           text NOT NULL,
    payload          json NOT NULL,
    result           json,
    error            text,
    attempts         integer NOT NULL DEFAULT 0,
    tag              text,
    priority         integer NOT NULL DEFAULT 0,
    worker_id        text,
    conflict_id      bigint,
    scheduled_for    timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL,
    duration         double precision,
    unique_key       text,
    resumable        boolean NOT NULL DEFAULT false,
    max_crashes      integer NOT NULL DEFAULT 3,
    crashes          integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- fencing token of the current claim; `last_lease` is the token of the last written
    -- outcome, so a completion retried after a lost reply is recognised, not refused
    lease            text,
    last_lease       text,
    -- what a claim changed, so `release` can put an unstarted job back exactly
    prev_status      text,
    prev_started_at  timestamptz,
    claimed_at       timestamptz,
    -- on_exit hook of an ended job: NULL (none), 'due', 'taken' (by exit_worker_id), 'done'
    exit_hook        text,
    exit_worker_id   text
);

CREATE INDEX jobs_ready ON jobs (priority DESC, scheduled_for, id)
    WHERE status IN ('pending', 'paused');
CREATE UNIQUE INDEX jobs_unique_key ON jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX jobs_worker ON jobs (worker_id) WHERE worker_id IS NOT NULL;
CREATE INDEX jobs_name ON jobs (name);

CREATE TABLE job_history (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE job_history ADD PRIMARY KEY (id);
CREATE INDEX job_history_ended ON job_history (ended_at);
CREATE INDEX job_history_name ON job_history (name, id);
CREATE INDEX job_history_status ON job_history (status, id);
CREATE INDEX job_history_exit_due ON job_history (name, id) WHERE exit_hook = 'due';
CREATE INDEX job_history_exit_taken ON job_history (exit_worker_id)
    WHERE exit_hook = 'taken';

-- One row per fired cron tick: the unique key that makes a tick fire once across every
-- worker, kept apart from the job rows because those move between the two tables.
CREATE TABLE cron_ticks (
    name   text NOT NULL,
    tick   timestamptz NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (name, tick)
);

CREATE TABLE crons (
    name       text PRIMARY KEY,
    expression text NOT NULL,
    timezone   text NOT NULL,
    watermark  timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    tags          text[],
    concurrency   integer NOT NULL,
    lease_timeout double precision NOT NULL,
    started_at    timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL
);

-- Wake listening workers when jobs appear or end. Statement-level, so a COPY of 10,000
-- jobs sends one notification; the channel is per schema (see PostgresStore.channel).
CREATE FUNCTION notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('batchwork_' || TG_TABLE_SCHEMA, 63), '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs();
CREATE TRIGGER job_history_notify AFTER INSERT ON job_history
    FOR EACH STATEMENT EXECUTE FUNCTION notify_jobs();
