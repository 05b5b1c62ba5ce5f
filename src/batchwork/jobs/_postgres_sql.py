"""SQL text of the PostgreSQL store, built once per schema.

Queries are ``bytes`` with the schema already quoted in; psycopg sends them as they are and
prepares the frequent ones on each connection. The tables are described in
``sql/postgres/0001_initial.sql``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import cached_property

from ._model import Job

# The columns a Job record is built from, in the order of its fields.
JOB_COLUMNS = [
    f"{field.name}::text" if field.name in ("payload", "result") else field.name
    for field in fields(Job)
]

# Every column of ``jobs`` and ``job_history`` (the two tables have the same columns): the
# record's, then the store's own bookkeeping.
ALL_COLUMNS = [
    *(field.name for field in fields(Job)),
    "lease",
    "last_lease",
    "prev_status",
    "prev_started_at",
    "claimed_at",
    "exit_hook",
    "exit_worker_id",
]

# Columns an enqueue writes; the rest take their defaults. A plain job (``is_plain``)
# needs only the first ones, PLAIN_COLUMNS: its type and status are known.
PLAIN_COLUMNS = [
    "name",
    "payload",
    "tag",
    "priority",
    "scheduled_for",
    "created_at",
    "updated_at",
    "resumable",
    "max_crashes",
    "error",
]
INSERT_COLUMNS = [*PLAIN_COLUMNS, "id", "type", "status", "unique_key", "conflict_id", "ended_at"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Outcome columns passed to ``complete`` as parallel arrays. ``hook``: the worker runs the
# on_exit hook itself (taken); ``has_hook``: the job has one at all (else none is left due).
_OUTCOME = (
    "unnest(%(ids)b::bigint[], %(leases)b::text[], %(statuses)b::text[], "
    "%(ended)b::timestamptz[], %(durations)b::float8[], %(results)b::text[], "
    "%(errors)b::text[], %(retry)b::timestamptz[], %(hooks)b::bool[], %(has_hooks)b::bool[]) "
    "AS o(id, lease, status, ended_at, duration, result, error, retry_at, hook, has_hook)"
)

# A claim or heartbeat lost in a database crash only returns a job to the queue, so these
# commit without waiting for the WAL flush. set_config(..., true) inside the statement
# applies to the statement's own (implicit) transaction and is read at its commit.
ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"


def check_schema(schema: str) -> str:
    """Return ``schema`` if it is a plain identifier, else raise ``ValueError``."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"schema {schema!r} is not a plain identifier (letters, digits, _; at most 63)"
        )
    return schema


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema (the trigger in the migration computes it
    the same way)."""
    return f"batchwork_{schema}"[:63]


def _select(table: str, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c for c in JOB_COLUMNS) + f" FROM {table}"


def _moved(overrides: dict[str, str], source: str = "m") -> str:
    """The select list that copies a row of ``source`` with some columns replaced."""
    return ", ".join(overrides.get(c, f"{source}.{c}") for c in ALL_COLUMNS)


@dataclass(frozen=True)
class Sql:
    """Every statement of the store, for one schema."""

    schema: str

    @property
    def s(self) -> str:
        return f'"{self.schema}"'

    # -- tables ------------------------------------------------------------------------
    @property
    def jobs(self) -> str:
        return f"{self.s}.jobs"

    @property
    def history(self) -> str:
        return f"{self.s}.job_history"

    def q(self, text: str) -> bytes:
        return text.encode()

    # -- migrations --------------------------------------------------------------------
    def has_versions(self) -> bytes:
        return self.q(f"SELECT to_regclass('{self.s}.schema_version') IS NOT NULL")

    def current_version(self) -> bytes:
        return self.q(f"SELECT coalesce(max(version), 0) FROM {self.s}.schema_version")

    def migration_prelude(self) -> bytes:
        return self.q(
            f"CREATE SCHEMA IF NOT EXISTS {self.s};"
            f"CREATE TABLE IF NOT EXISTS {self.s}.schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )

    def migration_done(self) -> bytes:
        return self.q(f"INSERT INTO {self.s}.schema_version (version) VALUES (%s)")

    def set_search_path(self) -> bytes:
        return self.q(f"SET LOCAL search_path TO {self.s}")

    # -- clock -------------------------------------------------------------------------
    clock = b"SELECT extract(epoch FROM clock_timestamp())::float8"

    # -- enqueue -----------------------------------------------------------------------
    @cached_property
    def insert_job(self) -> bytes:
        """One plain job (parameters: ``plain_row``), notifying from the same statement."""
        return self.q(
            f"INSERT INTO {self.jobs} ({', '.join(PLAIN_COLUMNS)}, type, status) "
            f"VALUES ({_placeholders(PLAIN_COLUMNS)}, 'job', 'pending') "
            f"RETURNING id, pg_notify('{channel_for(self.schema)}', '')"
        )

    def _insert_with_id(self, table: str, tail: str = "") -> bytes:
        return self.q(
            f"INSERT INTO {table} ({', '.join(INSERT_COLUMNS)}) "
            f"VALUES ({_placeholders(INSERT_COLUMNS)}) {tail}"
        )

    def insert_active(self) -> bytes:
        return self._insert_with_id(
            self.jobs,
            "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id",
        )

    def insert_ended(self) -> bytes:
        return self._insert_with_id(self.history, "RETURNING id")

    def copy_jobs(self) -> bytes:
        return self.q(f"COPY {self.jobs} ({', '.join(INSERT_COLUMNS)}) FROM STDIN")

    def next_ids(self) -> bytes:
        """``%s`` ids drawn in order, as ``(first, None)`` when they are consecutive (the
        usual case: nothing to send back but the first) or ``(first, all of them)``; and
        the NOTIFY of the enqueue, delivered if and when its transaction commits."""
        return self.q(
            f"WITH s AS (SELECT nextval('{self.s}.job_id_seq') AS i "
            "FROM generate_series(1, %s)) "
            "SELECT min(i), CASE WHEN max(i) - min(i) + 1 = count(*) THEN NULL "
            f"ELSE array_agg(i) END, pg_notify('{channel_for(self.schema)}', '') FROM s"
        )

    def active_by_key(self) -> bytes:
        return self.q(f"SELECT id FROM {self.jobs} WHERE unique_key = %s")

    def active_by_name(self) -> bytes:
        return self.q(f"SELECT id FROM {self.jobs} WHERE name = %s ORDER BY id LIMIT 1")

    lock = b"SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

    def claim_tick(self) -> bytes:
        return self.q(
            f"INSERT INTO {self.s}.cron_ticks (name, tick, job_id) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING job_id"
        )

    # -- workers -----------------------------------------------------------------------
    def register_worker(self) -> bytes:
        return self.q(
            f"INSERT INTO {self.s}.workers (id, hostname, pid, tags, concurrency, "
            "lease_timeout, started_at, heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, "
            "tags = excluded.tags, concurrency = excluded.concurrency, "
            "lease_timeout = excluded.lease_timeout, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at"
        )

    def unregister_worker(self) -> bytes:
        return self.q(f"DELETE FROM {self.s}.workers WHERE id = %s")

    def workers(self) -> bytes:
        return self.q(
            "SELECT w.id, w.hostname, w.pid, w.tags, w.concurrency, w.lease_timeout, "
            "w.started_at, w.heartbeat_at, "
            f"array(SELECT j.id FROM {self.jobs} j WHERE j.worker_id = w.id "
            "AND j.status = 'running' ORDER BY j.id) "
            f"FROM {self.s}.workers w ORDER BY w.started_at, w.id"
        )

    def heartbeat(self) -> bytes:
        return self.q(
            f"WITH w AS (UPDATE {self.s}.workers "
            "SET heartbeat_at = greatest(heartbeat_at, %(now)s) "
            "WHERE id = %(worker)s RETURNING id) "
            "SELECT (SELECT count(*) FROM w), "
            f"array(SELECT id FROM {self.jobs} WHERE id = ANY(%(running)s::bigint[]) "
            "AND worker_id = %(worker)s AND status = 'running' AND cancel_requested ORDER BY id), "
            f"extract(epoch FROM clock_timestamp())::float8, {ASYNC_COMMIT}"
        )

    # -- claims ------------------------------------------------------------------------
    def claim(self, *, tagged: bool) -> bytes:
        tags = "AND (tag IS NULL OR tag = ANY(%(tags)s::text[])) " if tagged else ""
        return self._claim(
            f"SELECT id FROM {self.jobs} "
            "WHERE status IN ('pending', 'paused') AND scheduled_for <= %(now)s "
            f"{tags}ORDER BY priority DESC, scheduled_for, id "
            "LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
        )

    def claim_job(self) -> bytes:
        return self._claim(
            f"SELECT id FROM {self.jobs} WHERE id = %(id)s "
            "AND status IN ('pending', 'paused') FOR UPDATE"
        )

    def _claim(self, picked: str) -> bytes:
        return self.q(
            f"WITH picked AS ({picked}), "
            f"claimed AS (UPDATE {self.jobs} j SET status = 'running', "
            "prev_status = j.status, prev_started_at = j.started_at, "
            "worker_id = %(worker)s, lease = %(lease)s, attempts = j.attempts + 1, "
            "started_at = coalesce(j.started_at, %(now)s), claimed_at = %(now)s, "
            f"updated_at = %(now)s FROM picked WHERE j.id = picked.id RETURNING {_cols('j')}) "
            f"SELECT claimed.*, {ASYNC_COMMIT} FROM claimed"
        )

    def release(self) -> bytes:
        return self.q(
            f"WITH r AS (UPDATE {self.jobs} j SET status = j.prev_status, "
            "attempts = j.attempts - 1, started_at = j.prev_started_at, worker_id = NULL, "
            "lease = NULL, updated_at = %(now)s "
            "FROM unnest(%(ids)s::bigint[], %(leases)s::text[]) AS l(id, lease) "
            "WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = l.id AND j.lease = l.lease "
            "AND j.worker_id = %(worker)s "
            "AND j.status = 'running' RETURNING j.id) "
            f"SELECT count(*), pg_notify('{channel_for(self.schema)}', '') FROM r"
        )

    def release_uncertain(self) -> bytes:
        return self.q(
            f"WITH r AS (UPDATE {self.jobs} j SET status = j.prev_status, "
            "attempts = j.attempts - 1, started_at = j.prev_started_at, worker_id = NULL, "
            "lease = NULL, updated_at = %(now)s "
            "WHERE j.lease = ANY(%(leases)s::text[]) AND j.worker_id = %(worker)s "
            "AND j.status = 'running' RETURNING j.id) "
            f"SELECT count(*), pg_notify('{channel_for(self.schema)}', '') FROM r"
        )

    # -- completions -------------------------------------------------------------------
    def complete(
        self, *, durable: bool, requeue: bool = True, end: bool = True, again: bool = False
    ) -> bytes:
        """The completion statement; ``requeue``/``end``: whether the batch holds outcomes
        that put jobs back (pending, paused) / that end them. A part the batch does not
        need is left out: a join of the outcomes with the worker's running jobs can be a
        nested loop, quadratic in the batch size."""
        # `j.id = ANY(ids)` makes the plan primary-key lookups whatever the statistics
        # say (joining on `o` alone may scan every running job of the worker). The worker
        # and the status are compared with columns of `o`, not constants: without
        # statistics the planner takes `worker_id = 'w' AND status = 'running'` to match
        # almost no row, reads them through jobs_worker and joins each against every
        # outcome (quadratic: 100 outcomes 4 ms instead of 1 ms).
        fence = (
            "j.id = ANY(%(ids)b::bigint[]) AND j.id = o.id AND j.worker_id = o.worker "
            "AND j.lease = o.lease AND j.status = o.running"
        )
        ended_cols = ", ".join(f"j.{c}" for c in ALL_COLUMNS)
        moved = _moved(
            {
                "status": "m.o_status",
                "result": "m.o_result::json",
                "error": "m.o_error",
                "ended_at": "m.o_ended_at",
                "updated_at": "m.o_ended_at",
                "duration": "m.o_duration",
                "lease": "NULL",
                "last_lease": "m.o_lease",
                "exit_hook": "CASE WHEN m.o_hook THEN 'taken' WHEN m.o_has_hook THEN 'due' END",
                "exit_worker_id": "CASE WHEN m.o_hook THEN %(worker)s END",
            }
        )
        commit = "" if durable else f", {ASYNC_COMMIT}"
        # materialized, so that its worker and status stay join columns (see `fence`)
        ctes = [
            "o AS MATERIALIZED (SELECT *, %(worker)s::text AS worker, 'running' AS running "
            f"FROM {_OUTCOME})"
        ]
        selects = []
        if requeue:
            ctes.append(
                f"again AS (UPDATE {self.jobs} j SET status = o.status, "
                "scheduled_for = coalesce(o.retry_at, j.scheduled_for), "
                "error = CASE WHEN o.status = 'pending' THEN o.error ELSE j.error END, "
                "duration = o.duration, updated_at = o.ended_at, worker_id = NULL, "
                f"lease = NULL, last_lease = o.lease FROM o WHERE {fence} "
                "AND o.status IN ('pending', 'paused') RETURNING j.id)"
            )
            # a paused job (or a retry) is claimable again: wake the idle workers
            selects.append(
                f"SELECT id{commit}, pg_notify('{channel_for(self.schema)}', '')::text FROM again"
            )
        if end:
            ctes.append(
                f"ended AS (DELETE FROM {self.jobs} j USING o WHERE {fence} "
                "AND o.status NOT IN ('pending', 'paused') "
                f"RETURNING {ended_cols}, o.status AS o_status, o.result AS o_result, "
                "o.error AS o_error, o.ended_at AS o_ended_at, o.duration AS o_duration, "
                "o.lease AS o_lease, o.hook AS o_hook, o.has_hook AS o_has_hook)"
            )
            ctes.append(
                f"moved AS (INSERT INTO {self.history} ({', '.join(ALL_COLUMNS)}) "
                f"SELECT {moved} FROM ended m RETURNING id)"
            )
            selects.append(f"SELECT id{commit}, '' FROM moved")
        if again or not selects:
            selects.append(self._already_written(commit))
        return self.q("WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(selects))

    def _already_written(self, commit: str) -> str:
        # Outcomes an earlier try of this very call wrote before its reply was lost: the
        # same lease, status and end time (a different outcome for that lease is refused).
        return (
            f"SELECT h.id{commit}, '' FROM {self.history} h JOIN o ON h.id = o.id "
            "AND h.last_lease = o.lease AND h.status = o.status AND h.ended_at = o.ended_at "
            "WHERE h.id = ANY(%(ids)b::bigint[]) AND h.worker_id = %(worker)s "
            f"UNION ALL SELECT j.id{commit}, '' FROM {self.jobs} j JOIN o ON j.id = o.id "
            "AND j.last_lease = o.lease AND j.status = o.status AND j.updated_at = o.ended_at "
            "WHERE j.id = ANY(%(ids)b::bigint[])"
        )

    def notify(self) -> bytes:
        return self.q(f"SELECT pg_notify('{channel_for(self.schema)}', '')")

    # -- recovery ----------------------------------------------------------------------
    def dead_workers(self) -> bytes:
        return self.q(
            f"DELETE FROM {self.s}.workers "
            "WHERE heartbeat_at < %(now)s - make_interval(secs => lease_timeout) RETURNING id"
        )

    def resume_crashed(self) -> bytes:
        return self.q(
            f"UPDATE {self.jobs} SET status = 'pending', crashes = crashes + 1, "
            "worker_id = NULL, lease = NULL, updated_at = %(now)s "
            "WHERE status = 'running' AND worker_id = ANY(%(dead)s::text[]) "
            "AND resumable AND crashes < max_crashes RETURNING id"
        )

    def end_crashed(self) -> bytes:
        moved = _moved(
            {
                "status": "'crashed'",
                "crashes": "m.crashes + 1",
                "error": "'crashed: worker ' || m.worker_id || ' stopped heartbeating' || "
                "CASE WHEN m.resumable THEN ' (crashed ' || (m.crashes + 1) || ' times, the "
                "limit is ' || m.max_crashes || ')' ELSE '' END",
                "ended_at": "%(now)s",
                "updated_at": "%(now)s",
                "duration": "extract(epoch FROM %(now)s - coalesce(m.claimed_at, %(now)s))",
                "lease": "NULL",
                "exit_hook": "'due'",
                "exit_worker_id": "NULL",
            }
        )
        return self.q(
            f"WITH m AS (DELETE FROM {self.jobs} WHERE status = 'running' "
            "AND worker_id = ANY(%(dead)s::text[]) "
            "AND NOT (resumable AND crashes < max_crashes) "
            f"RETURNING *), ins AS (INSERT INTO {self.history} ({', '.join(ALL_COLUMNS)}) "
            f"SELECT {moved} FROM m RETURNING *) SELECT {_select('ins')} ORDER BY id"
        )

    def free_exit_hooks(self) -> bytes:
        return self.q(
            f"UPDATE {self.history} SET exit_hook = 'due', exit_worker_id = NULL "
            "WHERE exit_hook = 'taken' AND exit_worker_id = ANY(%(dead)s::text[])"
        )

    # -- exit hooks --------------------------------------------------------------------
    def claim_exit_hooks(self) -> bytes:
        return self.q(
            f"WITH picked AS (SELECT id FROM {self.history} WHERE exit_hook = 'due' "
            "AND name = ANY(%(names)s::text[]) ORDER BY id LIMIT %(limit)s "
            f"FOR UPDATE SKIP LOCKED), taken AS (UPDATE {self.history} h "
            "SET exit_hook = 'taken', exit_worker_id = %(worker)s FROM picked "
            f"WHERE h.id = picked.id RETURNING {_cols('h')}) "
            "SELECT * FROM taken ORDER BY id"
        )

    def finish_exit_hooks(self) -> bytes:
        return self.q(
            f"UPDATE {self.history} SET exit_hook = 'done' WHERE id = ANY(%s::bigint[]) "
            "AND exit_hook = 'taken' AND exit_worker_id = %s"
        )

    # -- crons -------------------------------------------------------------------------
    def cron_states(self) -> bytes:
        return self.q(
            "SELECT name, expression, timezone, watermark, created_at, updated_at "
            f"FROM {self.s}.crons ORDER BY name"
        )

    def insert_cron(self) -> bytes:
        return self.q(
            f"INSERT INTO {self.s}.crons (name, expression, timezone, watermark, created_at, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
        )

    def update_cron(self) -> bytes:
        return self.q(
            f"UPDATE {self.s}.crons SET expression = %s, timezone = %s, watermark = %s, "
            "updated_at = %s WHERE name = %s"
        )

    def delete_crons(self) -> bytes:
        return self.q(f"DELETE FROM {self.s}.crons WHERE name = ANY(%s::text[])")

    def drop_pending_ticks(self) -> bytes:
        return self.q(
            f"DELETE FROM {self.jobs} WHERE type = 'cron_task' AND status = 'pending' "
            "AND name = ANY(%s::text[])"
        )

    def raise_watermark(self) -> bytes:
        return self.q(
            f"UPDATE {self.s}.crons SET watermark = greatest(watermark, %s), updated_at = %s "
            "WHERE name = %s"
        )

    # -- queries -----------------------------------------------------------------------
    def get(self) -> bytes:
        return self.q(
            f"SELECT {_select(self.jobs)} WHERE id = %(id)s "
            f"UNION ALL SELECT {_select(self.history)} WHERE id = %(id)s"
        )

    def list_jobs(self, where: str) -> bytes:
        return self.q(
            f"SELECT {_select(self.jobs)} {where} UNION ALL "
            f"SELECT {_select(self.history)} {where} "
            "ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
        )

    def counts(self) -> bytes:
        return self.q(
            f"SELECT name, status, count(*) FROM (SELECT name, status FROM {self.jobs} "
            f"UNION ALL SELECT name, status FROM {self.history}) a GROUP BY name, status"
        )

    def timeline(self) -> bytes:
        return self.q(
            "SELECT floor(extract(epoch FROM ended_at - %(since)s) / %(bucket)s)::bigint AS b, "
            "count(*) FILTER (WHERE status = 'finished'), "
            "count(*) FILTER (WHERE status IN ('errored', 'timed_out', 'crashed')), "
            "avg(extract(epoch FROM claimed_at - scheduled_for)::float8) "
            f"FROM {self.history} WHERE ended_at >= %(since)s "
            "AND status IN ('finished', 'errored', 'timed_out', 'crashed') GROUP BY b ORDER BY b"
        )

    def lock_active(self) -> bytes:
        return self.q(f"SELECT status FROM {self.jobs} WHERE id = %s FOR UPDATE")

    def ended_status(self) -> bytes:
        return self.q(f"SELECT status FROM {self.history} WHERE id = %s")

    def cancel_now(self) -> bytes:
        moved = _moved(
            {
                "status": "'cancelled'",
                "ended_at": "%(now)s",
                "updated_at": "%(now)s",
                "exit_hook": "'due'",
                "exit_worker_id": "NULL",
            }
        )
        return self.q(
            f"WITH m AS (DELETE FROM {self.jobs} WHERE id = %(id)s RETURNING *) "
            f"INSERT INTO {self.history} ({', '.join(ALL_COLUMNS)}) SELECT {moved} FROM m"
        )

    def request_cancel(self) -> bytes:
        return self.q(
            f"WITH u AS (UPDATE {self.jobs} SET cancel_requested = true, "
            "updated_at = %(now)s WHERE id = %(id)s RETURNING id) "
            f"SELECT count(*), pg_notify('{channel_for(self.schema)}', '') FROM u"
        )

    def retry(self) -> bytes:
        moved = _moved(
            {
                "status": "'pending'",
                "scheduled_for": "%(now)s",
                "ended_at": "NULL",
                "updated_at": "%(now)s",
                "worker_id": "NULL",
                "lease": "NULL",
                "cancel_requested": "false",
                "result": "NULL",
                "conflict_id": "NULL",
                "crashes": "0",
                "exit_hook": "NULL",
                "exit_worker_id": "NULL",
                # the key may belong to a newer active job by now; that one keeps it
                "unique_key": f"CASE WHEN EXISTS (SELECT 1 FROM {self.jobs} a "
                "WHERE a.unique_key = m.unique_key) THEN NULL ELSE m.unique_key END",
            }
        )
        return self.q(
            f"WITH m AS (DELETE FROM {self.history} WHERE id = %(id)s RETURNING *), "
            f"ins AS (INSERT INTO {self.jobs} ({', '.join(ALL_COLUMNS)}) SELECT {moved} FROM m "
            f"RETURNING id) SELECT id, pg_notify('{channel_for(self.schema)}', '') FROM ins"
        )

    def exists_active(self) -> bytes:
        return self.q(f"SELECT 1 FROM {self.jobs} WHERE id = %s")

    def purge(self) -> bytes:
        return self.q(
            f"WITH d AS (DELETE FROM {self.history} WHERE id IN (SELECT id FROM {self.history} "
            "WHERE ended_at < %(before)s LIMIT %(chunk)s) RETURNING id), "
            f"t AS (DELETE FROM {self.s}.cron_ticks WHERE tick < %(before)s) "
            "SELECT count(*) FROM d"
        )


def _placeholders(columns: list[str]) -> str:
    return ", ".join("%s::json" if c == "payload" else "%s" for c in columns)


def _cols(alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in JOB_COLUMNS)
