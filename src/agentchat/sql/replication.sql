-- Named queries for replication (preflight facts, publication, subscription, slots). A block
-- with {placeholders} runs through queries.compose(name, placeholder=...), each filled with
-- psycopg.sql.Identifier (names) or psycopg.sql.Literal (values).

-- name: source_facts
-- What preflight needs to know about the source.
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       pg_catalog.current_setting('wal_level') AS wal_level,
       pg_catalog.current_setting('max_replication_slots')::int AS max_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS used_slots,
       pg_catalog.current_setting('max_wal_senders')::int AS max_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'walsender')::int AS used_senders,
       r.rolsuper AS is_superuser,
       r.rolcreaterole AS can_create_role,
       (SELECT system_identifier FROM pg_catalog.pg_control_system())::text AS system_id
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user;

-- name: target_facts
-- What preflight needs to know about the target.
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       pg_catalog.current_setting('max_logical_replication_workers')::int AS max_workers,
       (SELECT count(*) FROM pg_catalog.pg_subscription WHERE subenabled)::int AS used_workers,
       r.rolsuper AS is_superuser,
       (SELECT system_identifier FROM pg_catalog.pg_control_system())::text AS system_id,
       coalesce(pg_catalog.current_setting('max_active_replication_origins', true),
                pg_catalog.current_setting('max_replication_slots'))::int AS max_origins,
       (SELECT count(*) FROM pg_catalog.pg_replication_origin)::int AS used_origins
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user;

-- name: publication_tables
-- The tables (schema.table), column lists and row filters a publication carries.
SELECT pt.schemaname || '.' || pt.tablename, pt.attnames::text[], pt.rowfilter
FROM pg_catalog.pg_publication_tables pt
WHERE pt.pubname = %s
ORDER BY 1;

-- name: publication_exists
-- Whether a publication of this name exists in this database.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = %s);

-- name: role_exists
-- Whether a role exists in this cluster.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s);

-- name: slot_exists
-- Whether a replication slot exists on this cluster, and whether a process uses it.
SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = %s;

-- name: create_slot
-- The same-cluster workaround: the slot first, then CREATE SUBSCRIPTION with create_slot = false.
SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput');

-- name: drop_slot
-- Drop a replication slot (it must be inactive).
SELECT pg_catalog.pg_drop_replication_slot(%s);

-- name: agent_chat_subscriptions
-- Subscriptions in this database that carry agent_chat (read from pg_subscription_rel): name,
-- enabled, and disable_on_error (PG15+).
SELECT s.subname, s.subenabled, s.subdisableonerr
FROM pg_catalog.pg_subscription s
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel sr
               WHERE sr.srsubid = s.oid AND sr.srrelid = to_regclass('public.agent_chat'))
ORDER BY s.subname;

-- name: subscription
-- One subscription of this database by name (slot, enabled, conninfo for superusers).
SELECT s.subname, s.subslotname, s.subenabled, s.subconninfo
FROM pg_catalog.pg_subscription s
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
  AND s.subname = %s;

-- name: cluster_subscription_conninfos
-- Every subscription's conninfo in this cluster (pg_subscription is shared; superusers only).
SELECT s.subname, d.datname, s.subconninfo
FROM pg_catalog.pg_subscription s
JOIN pg_catalog.pg_database d ON d.oid = s.subdbid;

-- name: sync_state
-- Per-table initial sync state of a subscription (r = ready), and its error counters.
SELECT (SELECT count(*) FROM pg_catalog.pg_subscription_rel sr WHERE sr.srsubid = s.oid)::int,
       (SELECT count(*) FROM pg_catalog.pg_subscription_rel sr
         WHERE sr.srsubid = s.oid AND sr.srsubstate = 'r')::int,
       s.subenabled,
       coalesce(st.sync_error_count, 0)::int,
       coalesce(st.apply_error_count, 0)::int
FROM pg_catalog.pg_subscription s
LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid
WHERE s.subname = %s
  AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database());

-- name: create_publication
-- The seed's publication, plus the chat's embeddings (computed once at the source) by row filter.
-- memory_embeddings.id is left out (a column list): each database numbers its own memory rows,
-- so a replica's local memories never collide with the ids of replicated ones.
CREATE PUBLICATION {publication}
    FOR TABLE public.agent_chat,
              public.memory_embeddings (source_type, source_id, content, content_hash, embedding,
                                        model, created_at, updated_at)
              WHERE (source_type = 'agent_chat');

-- name: grant_published
-- The replication role reads exactly the published tables, nothing else.
GRANT SELECT ON public.agent_chat, public.memory_embeddings TO {role};

-- name: agent_chat_rows
-- Whether the target already holds chat history (a copy of the source's would collide).
SELECT count(*)::bigint FROM public.agent_chat;

-- name: role_in_use
-- Whether any session (a walsender included) is connected as this role right now.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE usename = %s);

-- name: replicate_lock
-- One replicate add at a time changes a source's roles, grants and publication (session lock).
SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtext('agentchat.replicate'));

-- name: replicate_unlock
-- Release replicate_lock.
SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('agentchat.replicate'));

-- name: drop_publication
-- The publication's undo (only when this run created it).
DROP PUBLICATION IF EXISTS {publication};

-- name: create_subscription
-- The subscription (disable_on_error = false: a lost connection is retried by the apply worker,
-- so it heals by itself). In one cluster the slot exists already (create_slot false).
-- {synchronous_commit}: 'off' (PostgreSQL's default) for a one-way replica; 'local' for a
-- two-way link, whose applied rows a relay passes on: a walsender sends only flushed WAL, so
-- with 'off' each hop waits for the WAL writer (up to wal_writer_delay, 200 ms).
CREATE SUBSCRIPTION {subscription} CONNECTION {conninfo} PUBLICATION {publication}
    WITH (slot_name = {slot}, create_slot = {create_slot}, copy_data = {copy_data},
          disable_on_error = false, synchronous_commit = {synchronous_commit});

-- name: disable_subscription
-- First step of dropping a subscription without touching its slot.
ALTER SUBSCRIPTION {subscription} DISABLE;

-- name: detach_subscription_slot
-- Second step: the subscription lets go of its slot (dropped on the source separately).
ALTER SUBSCRIPTION {subscription} SET (slot_name = NONE);

-- name: drop_subscription
-- Last step: the subscription, now without a slot.
DROP SUBSCRIPTION {subscription};

-- name: enable_subscription
-- A subscription found disabled is enabled again (install, doctor --fix).
ALTER SUBSCRIPTION {subscription} ENABLE;

-- name: subscription_retries_errors
-- An older subscription switched to disable_on_error = false, so it heals by itself.
ALTER SUBSCRIPTION {subscription} SET (disable_on_error = false);

-- name: subscription_connection
-- Point a subscription at another connection (a role of its own); carries a password.
ALTER SUBSCRIPTION {subscription} CONNECTION {conninfo};

-- name: create_replication_role
-- A subscription's own replication role on the source; carries a password.
CREATE ROLE {role} LOGIN REPLICATION PASSWORD {password};

-- name: set_role_password
-- A new password for agentchat's own role of one subscription; carries a password.
ALTER ROLE {role} PASSWORD {password};

-- name: drop_owned_by
-- The role's grants in this database, before the role itself.
DROP OWNED BY {role};

-- name: drop_replication_role
-- A replication role this package made.
DROP ROLE IF EXISTS {role};

-- name: statement_logging
-- The session's statement-logging settings, saved before statements that carry a password.
SELECT pg_catalog.current_setting('log_statement'),
       pg_catalog.current_setting('log_min_error_statement'),
       pg_catalog.current_setting('log_min_duration_statement');

-- name: statement_logging_off
-- Keep the next statements out of the server log, even when they fail (superusers only).
SELECT pg_catalog.set_config('log_statement', 'none', false),
       pg_catalog.set_config('log_min_error_statement', 'panic', false),
       pg_catalog.set_config('log_min_duration_statement', '-1', false);

-- name: statement_logging_restore
-- Put the saved statement-logging settings back.
SELECT pg_catalog.set_config('log_statement', %s, false),
       pg_catalog.set_config('log_min_error_statement', %s, false),
       pg_catalog.set_config('log_min_duration_statement', %s, false);

-- name: link_filter_down
-- Two-way links (docs/design/two-way.md): rows of every node except {nodes}, legacy rows too;
-- {column} is the message id (agent_chat.id, memory_embeddings.source_id).
({column} < 4503599627370496 OR (({column} >> 12) & 1023) <> ALL ({nodes}))

-- name: link_filter_up
-- Two-way links: rows written on one of {nodes}, never legacy rows.
({column} >= 4503599627370496 AND (({column} >> 12) & 1023) = ANY ({nodes}))

-- name: link_nodes_down
-- The node registry's rows along a down link: every node's but {nodes}'.
(node <> ALL ({nodes}))

-- name: link_nodes_up
-- The node registry's rows along an up link: {nodes}' only.
(node = ANY ({nodes}))

-- name: create_link_publication
-- One two-way link's publication (docs/replication.md): the chat, the chat's embeddings, the
-- node registry and the agent registry, each through the link's filter on the node of origin
-- (an agent's row on the node where it was added). The filters' columns are in each table's
-- replica identity (the agent registry's is FULL), so UPDATE and DELETE keep working.
CREATE PUBLICATION {publication}
    FOR TABLE public.agent_chat WHERE {chat_filter},
              public.memory_embeddings (source_type, source_id, content, content_hash, embedding,
                                        model, created_at, updated_at)
              WHERE (source_type = 'agent_chat' AND {embedding_filter}),
              public.agentchat_nodes WHERE {node_filter},
              public.agentchat_agents WHERE {node_filter};

-- name: set_link_publication
-- A link's filters changed (a node joined or left below it): later changes follow them at once,
-- with nothing to do on the subscriber.
ALTER PUBLICATION {publication}
    SET TABLE public.agent_chat WHERE {chat_filter},
              public.memory_embeddings (source_type, source_id, content, content_hash, embedding,
                                        model, created_at, updated_at)
              WHERE (source_type = 'agent_chat' AND {embedding_filter}),
              public.agentchat_nodes WHERE {node_filter},
              public.agentchat_agents WHERE {node_filter};

-- name: grant_link_published
-- A link's replication role reads exactly the published tables.
GRANT SELECT ON public.agent_chat, public.memory_embeddings, public.agentchat_nodes,
                public.agentchat_agents TO {role};

-- name: link_subscriptions
-- This database's two-way link subscriptions (agent_chat_<x>_to_<y>): name, slot, enabled.
SELECT s.subname, s.subslotname, s.subenabled
FROM pg_catalog.pg_subscription s
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
  AND s.subname ~ '^agent_chat_[0-9]+_to_[0-9]+$'
ORDER BY s.subname;

-- name: link_publications
-- This database's two-way link publications (agent_chat_<x>_to_<y>).
SELECT p.pubname FROM pg_catalog.pg_publication p
WHERE p.pubname ~ '^agent_chat_[0-9]+_to_[0-9]+$'
ORDER BY p.pubname;

-- name: server_version_num
-- The server's version, as a number (160004).
SELECT pg_catalog.current_setting('server_version_num')::int;

-- name: forget_other_nodes
-- A node about to join keeps only its own registry row: the others' arrive with the copy.
DELETE FROM public.agentchat_nodes WHERE node <> %s;

-- name: forget_node
-- A node leaves (or joins afresh): its registry row goes, and the deletion travels on.
DELETE FROM public.agentchat_nodes WHERE node = %s;

-- name: forget_node_agents
-- A node leaves: the agents added there go from the agent registry too.
DELETE FROM public.agentchat_agents WHERE node = %s;

-- name: forget_other_nodes_agents
-- A node that left keeps only the agents added on it.
DELETE FROM public.agentchat_agents WHERE node IS DISTINCT FROM %s;

-- name: ids_of_node
-- The ids of the messages carrying one node number (not legacy ids).
SELECT id FROM public.agent_chat
 WHERE id >= 4503599627370496 AND ((id >> 12) & 1023) = %s;

-- name: ids_held
-- How many of these ids this database holds.
SELECT count(*) FROM public.agent_chat WHERE id = ANY(%s::bigint[]);

-- name: forget_carried_nodes
-- Before a link's copy: the registry rows it carries, which the receiver may hold already.
DELETE FROM public.agentchat_nodes WHERE {node_filter};

-- name: forget_carried_agents
-- Before a link's copy: the agent registry's rows it carries (the receiver may hold them).
DELETE FROM public.agentchat_agents WHERE {node_filter};

-- name: refresh_subscription
-- A link's publication gained a table (an older link, after an upgrade): the subscriber starts
-- copying it, through its filter.
ALTER SUBSCRIPTION {subscription} REFRESH PUBLICATION WITH (copy_data = true);

-- name: subscription_tables
-- How many tables a subscription of this database carries.
SELECT count(*)::int FROM pg_catalog.pg_subscription_rel sr
  JOIN pg_catalog.pg_subscription s ON s.oid = sr.srsubid
 WHERE s.subname = %s
   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                     WHERE datname = pg_catalog.current_database());

-- name: system_identifier
-- This cluster's system identifier (slot names carry it).
SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system())::text;
