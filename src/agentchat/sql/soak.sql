-- Queries of `agentchat soak` (soak.py): counting what was sent, replicated and delivered.

-- name: soak_messages
-- Every message's id, sender and recipients: what was sent (at the source), what arrived (on a replica).
SELECT id, sender, mentions FROM public.agent_chat ORDER BY id;

-- name: soak_marks
-- How often each agent recorded each message it handled (the exactly-once record: 1 each).
SELECT agent, chat_id, count(*) FROM public.agent_chat_processed GROUP BY agent, chat_id;

-- name: soak_subscriptions
-- This database's subscriptions: enabled, whether an apply worker runs, errors counted so far.
SELECT s.subname, s.subenabled, w.pid IS NOT NULL, coalesce(st.apply_error_count, 0)
  FROM pg_catalog.pg_subscription s
  LEFT JOIN pg_catalog.pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
  LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid
 WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
 ORDER BY s.subname;

-- name: soak_kill_walsenders
-- The fault "walsender killed": terminate every walsender serving this (source) database.
SELECT pg_catalog.pg_terminate_backend(pid)
  FROM pg_catalog.pg_stat_activity
 WHERE backend_type = 'walsender' AND datname = current_database();

-- name: soak_embeddings
-- Chat embedding rows here, and how many hold a vector.
SELECT count(*), count(*) FILTER (WHERE embedding IS NOT NULL)
  FROM public.memory_embeddings WHERE source_type = 'agent_chat';

-- name: soak_listeners
-- Listeners connected to this cluster: soak-<agent> sessions with both connections open.
SELECT count(*) FROM (
    SELECT application_name FROM pg_catalog.pg_stat_activity
     WHERE application_name LIKE 'soak-%' GROUP BY application_name HAVING count(*) >= 2
) AS ready;

-- name: soak_walsenders
-- Walsenders serving this (source) database now.
SELECT count(*) FROM pg_catalog.pg_stat_activity
 WHERE backend_type = 'walsender' AND datname = current_database();

-- name: soak_count
-- How many messages this database holds.
SELECT count(*) FROM public.agent_chat;
