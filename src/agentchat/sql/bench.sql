-- Queries of `agentchat bench` (agentchat.bench): the lab's databases, the writers' loads and
-- the floors each figure is compared with (bare loops that do only what the product must do).

-- name: bench_create_database
-- A lab database, copied from the lab's installed template (several times quicker than installing).
CREATE DATABASE {database} TEMPLATE {template};

-- name: bench_seal_template
-- The lab's installed template: closed to connections, so CREATE DATABASE may copy it at any time.
ALTER DATABASE {database} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false;

-- name: bench_drop_database
-- A lab database at the end of its benchmark (its own connections closed by force).
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: bench_database_exists
-- Whether a database of this name exists on the lab's cluster.
SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s;

-- name: bench_subscriptions
-- Every subscription in this database (the lab drops them before dropping the database).
SELECT s.subname FROM pg_catalog.pg_subscription s
 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                     WHERE datname = pg_catalog.current_database());

-- name: bench_send
-- One message (sender, text, recipients); its id.
SELECT public.send_agent_message(%s, %s, %s::text[]);

-- name: bench_send_many
-- A transaction's worth of messages (sender, recipients, how many rows); their largest id.
SELECT max(public.send_agent_message(%s, 'bulk ' || g, %s::text[]))
  FROM pg_catalog.generate_series(1, %s) AS g;

-- name: bench_count_to
-- How many messages here mention any of the names given (a backlog on its way to a replica).
SELECT count(*) FROM public.agent_chat WHERE mentions && %s::text[];

-- name: bench_has_message
-- Whether the message with the id given has arrived here.
SELECT EXISTS (SELECT 1 FROM public.agent_chat WHERE id = %s);

-- name: bench_ids_to
-- The ids of the messages mentioning the names given, oldest first (the bare loop's work list).
SELECT id FROM public.agent_chat WHERE mentions && %s::text[] ORDER BY id;

-- name: bench_read_one
-- The bare loop's read of one message.
SELECT id, sender, message FROM public.agent_chat WHERE id = %s;

-- name: bench_mark_one
-- The bare loop's mark: the message handled by the agent (id, name).
INSERT INTO public.agent_chat_processed (chat_id, agent, status) VALUES (%s, %s, 'routed');

-- name: bench_marks
-- How many marks the agent named recorded, and for how many distinct messages (equal: exactly once).
SELECT count(*), count(DISTINCT chat_id) FROM public.agent_chat_processed WHERE agent = %s;

-- name: bench_listen
-- The floor listener's wake-ups: the notify trigger's channel.
LISTEN agent_chat;

-- name: bench_walsender_pids
-- The walsenders serving this (source) database: their pids, for their CPU time in /proc.
SELECT pid FROM pg_catalog.pg_stat_replication
 WHERE pid IN (SELECT pid FROM pg_catalog.pg_stat_activity
                WHERE backend_type = 'walsender' AND datname = pg_catalog.current_database());

-- name: bench_apply_pids
-- The apply workers of this (replica) database's subscriptions: their pids, for their CPU time.
SELECT w.pid FROM pg_catalog.pg_stat_subscription w
  JOIN pg_catalog.pg_subscription s ON s.oid = w.subid
 WHERE w.pid IS NOT NULL
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                     WHERE datname = pg_catalog.current_database());

-- name: bench_pgbench_send
-- pgbench's transaction for the hub's commit rate: one message, whose trigger NOTIFYs.
SELECT public.send_agent_message('nova', 'commit rate', '{notified}');

-- name: bench_notify_trigger_off
-- The floor of the NOTIFY's own cost: the hub's notify trigger off (a throw-away lab database).
ALTER TABLE public.agent_chat DISABLE TRIGGER trg_notify_agent_chat;

-- name: bench_commit_times
-- When each of the messages given (ids) was committed at the source (seconds since the epoch;
-- needs track_commit_timestamp, as the lab sets). Not on a replica: an applied transaction
-- carries its origin's commit timestamp.
SELECT id, extract(epoch FROM pg_catalog.pg_xact_commit_timestamp(xmin))::float8
  FROM public.agent_chat WHERE id = ANY(%s);

-- name: bench_arrivals_setup
-- On a fan-out replica (a throw-away lab database): the moment each latency probe is applied,
-- by a trigger that fires on apply too (ENABLE ALWAYS).
CREATE UNLOGGED TABLE public.bench_arrivals (id bigint PRIMARY KEY, at float8 NOT NULL);
CREATE FUNCTION public.bench_arrival() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.bench_arrivals VALUES (NEW.id, extract(epoch FROM clock_timestamp()));
    RETURN NULL;
END
$$;
CREATE TRIGGER bench_arrival AFTER INSERT ON public.agent_chat
    FOR EACH ROW WHEN (NEW.mentions && '{fan}'::text[]) EXECUTE FUNCTION public.bench_arrival();
ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER bench_arrival;

-- name: bench_arrivals
-- When each of the messages given (ids) was applied here.
SELECT id, at FROM public.bench_arrivals WHERE id = ANY(%s);
