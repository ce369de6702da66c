-- Named queries for the graph of two-way links (agentchat.ops.graph): facts only, nothing here
-- changes a database. A link X -> Y is a publication on X and a subscription on Y, both named
-- agent_chat_<x>_to_<y> (docs/design/two-way.md).

-- name: graph_has_registry
-- Whether this database has the node registry (schema version 6 and later).
SELECT pg_catalog.to_regclass('public.agentchat_nodes') IS NOT NULL;

-- name: graph_registry
-- The node registry as this database holds it (each node's own row, replicated everywhere).
SELECT node, name, conninfo, parent FROM public.agentchat_nodes ORDER BY node, name;

-- name: graph_link_publications
-- This database's link publications: name, agent_chat's row filter as the server normalised it
-- (NULL: no filter, or agent_chat not published), and every table the publication carries.
SELECT p.pubname,
       (SELECT pt.rowfilter FROM pg_catalog.pg_publication_tables pt
         WHERE pt.pubname = p.pubname AND pt.schemaname = 'public'
           AND pt.tablename = 'agent_chat') AS chat_filter,
       coalesce((SELECT pg_catalog.array_agg(pt.tablename::text ORDER BY pt.tablename)
                   FROM pg_catalog.pg_publication_tables pt
                  WHERE pt.pubname = p.pubname), '{}') AS tables
FROM pg_catalog.pg_publication p
WHERE p.pubname ~ '^agent_chat_[0-9]+_to_[0-9]+$'
ORDER BY p.pubname;

-- name: graph_link_subscriptions
-- This database's link subscriptions: name, enabled, slot, publications, whether the apply
-- worker runs, and the error counters of pg_stat_subscription_stats.
SELECT s.subname,
       s.subenabled,
       s.subslotname,
       s.subpublications::text[],
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription w
                WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL)
           AS worker_running,
       coalesce(st.apply_error_count, 0)::bigint,
       coalesce(st.sync_error_count, 0)::bigint
FROM pg_catalog.pg_subscription s
LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
  AND s.subname ~ '^agent_chat_[0-9]+_to_[0-9]+$'
ORDER BY s.subname;

-- name: graph_subscription_origins
-- The origin option of this database's link subscriptions (PostgreSQL 16 and later).
SELECT s.subname, s.suborigin
FROM pg_catalog.pg_subscription s
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
  AND s.subname ~ '^agent_chat_[0-9]+_to_[0-9]+$';

-- name: graph_slots
-- Logical slots of this database (a link's slot lives on its sender): name, in use.
SELECT r.slot_name, r.active
FROM pg_catalog.pg_replication_slots r
WHERE r.database = pg_catalog.current_database() AND r.slot_type = 'logical'
ORDER BY r.slot_name;

-- name: graph_identity
-- Which database this is, however it was reached (two DSNs, one database): the cluster's
-- system identifier and the database's oid.
SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text || '/'
       || (SELECT oid FROM pg_catalog.pg_database
            WHERE datname = pg_catalog.current_database())::text;
