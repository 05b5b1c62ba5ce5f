-- batchwork PostgreSQL schema, version 2.
--
-- Ending a job no longer sends a NOTIFY: it woke every idle worker for a claim that could
-- find nothing new, and cost each completion batch a trip through the notification queue.
-- Jobs that become claimable (inserted, retried, released, resumed, paused) still notify.

DROP TRIGGER job_history_notify ON job_history;
