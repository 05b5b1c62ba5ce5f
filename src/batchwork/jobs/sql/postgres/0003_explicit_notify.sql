-- batchwork PostgreSQL schema, version 3.
--
-- Enqueues send their NOTIFY from the statement that inserts (a plpgsql statement trigger
-- cost a one-job enqueue about a tenth of its time); see Sql.insert_job and insert_all.

DROP TRIGGER jobs_notify ON jobs;
DROP FUNCTION notify_jobs();
