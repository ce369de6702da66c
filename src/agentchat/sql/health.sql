-- Named queries for status, doctor and verify: facts only, nothing here changes a database.

-- name: database_facts
-- Server-level facts of one database.
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       pg_catalog.current_setting('wal_level') AS wal_level,
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS is_superuser,
       (SELECT setting::int FROM pg_catalog.pg_settings
         WHERE name = 'wal_retrieve_retry_interval') AS retry_interval_ms;

-- name: subscription_facts
-- Every subscription of this database: state, apply worker, errors, per-table sync state.
SELECT s.subname,
       s.subenabled,
       s.subslotname,
       s.subpublications::text[],
       w.pid,
       w.last_msg_receipt_time,
       coalesce(st.apply_error_count, 0)::bigint,
       coalesce(st.sync_error_count, 0)::bigint,
       coalesce((SELECT pg_catalog.json_object_agg(c.relname, sr.srsubstate)
                   FROM pg_catalog.pg_subscription_rel sr
                   JOIN pg_catalog.pg_class c ON c.oid = sr.srrelid
                  WHERE sr.srsubid = s.oid), '{}'::json) AS tables,
       s.subdisableonerr,
       (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = w.pid)
           AS worker_started
FROM pg_catalog.pg_subscription s
LEFT JOIN pg_catalog.pg_stat_subscription w
       ON w.subid = s.oid AND w.relid IS NULL AND w.leader_pid IS NULL  -- the apply worker
LEFT JOIN pg_catalog.pg_stat_subscription_stats st ON st.subid = s.oid
WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
ORDER BY s.subname;

-- name: slot_facts
-- Logical slots of this database on this (source) cluster: activity and WAL they hold back.
SELECT r.slot_name,
       r.active,
       r.wal_status,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.restart_lsn)::bigint
           AS retained_bytes,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.confirmed_flush_lsn)::bigint
           AS lag_bytes,
       w.application_name,
       w.client_addr::text
FROM pg_catalog.pg_replication_slots r
LEFT JOIN pg_catalog.pg_stat_replication w ON w.pid = r.active_pid
WHERE r.database = pg_catalog.current_database() AND r.slot_type = 'logical'
ORDER BY r.slot_name;

-- name: existing_publications
-- Which of the given publications exist here (on a source).
SELECT pubname FROM pg_catalog.pg_publication WHERE pubname = ANY(%s);

-- name: chat_fingerprints
-- id and a content fingerprint of agent_chat rows, a batch of ids at a time (what the replica's
-- admission trigger compares: sender, channel, message, created_at).
SELECT id, pg_catalog.md5(sender || E'\x1f' || channel || E'\x1f' || message || E'\x1f'
                          || extract(epoch FROM created_at)::text)
FROM public.agent_chat
WHERE id > %s
ORDER BY id
LIMIT %s;

-- name: chat_fingerprints_of
-- The same fingerprints for given ids (on the source).
SELECT id, pg_catalog.md5(sender || E'\x1f' || channel || E'\x1f' || message || E'\x1f'
                          || extract(epoch FROM created_at)::text)
FROM public.agent_chat
WHERE id = ANY(%s);

-- name: chat_row_summary
-- A short description of one message, for a repair line.
SELECT id, sender, created_at, pg_catalog.left(message, 40) FROM public.agent_chat WHERE id = %s;

-- name: insert_probe
-- verify's probe: a message addressed to nobody on its own channel.
INSERT INTO public.agent_chat (channel, sender, message, mentions)
VALUES ('agentchat-verify', 'agentchat-verify', %s, '{}')
RETURNING id;

-- name: probe_arrived
-- Whether the probe has reached this database, and its embedding rows here.
SELECT EXISTS (SELECT 1 FROM public.agent_chat WHERE id = %s),
       (SELECT count(*) FROM public.memory_embeddings
         WHERE source_type = 'agent_chat' AND source_id = %s)::int;

-- name: delete_probe
-- Remove the probe (its embedding row first; the deletions replicate).
WITH e AS (DELETE FROM public.memory_embeddings
            WHERE source_type = 'agent_chat' AND source_id = %s)
DELETE FROM public.agent_chat WHERE id = %s;

-- name: verify_unlisten
-- verify's target stops listening once the probe is in (its connection stays open for the cleanup).
UNLISTEN agent_chat;

-- name: chat_count_upto
-- How many messages have an id up to a bound (to find messages that never reached a replica).
SELECT count(*)::bigint FROM public.agent_chat WHERE id <= %s;

-- name: chat_max_id
-- The newest message id here (0 when empty).
SELECT coalesce(max(id), 0)::bigint FROM public.agent_chat;

-- name: chat_count_between
-- How many messages have an id in (lower, upper]: what a replica must hold of its source's.
SELECT count(*)::bigint FROM public.agent_chat WHERE id > %s AND id <= %s;

-- name: agent_registry_roles
-- doctor: every registered agent, its role, where it was added, whether the role exists in this
-- cluster, and this database's node number (schema version 7).
SELECT a.name, a.role, a.node, (r.oid IS NOT NULL) AS role_exists, public.agentchat_node()
FROM public.agentchat_agents a
LEFT JOIN pg_catalog.pg_roles r ON r.rolname = a.role
ORDER BY a.name;

-- name: agent_role_rights
-- doctor: each agent role (a member of the agents' group, or a role the registry maps) and every
-- right it holds here that could exceed an agent's: attributes, other roles it is a member of,
-- privileges on the public schema's tables (column grants count) and sequences, CREATE on the
-- schema and the database. Table rights are a JSON list of [table, PRIVILEGE, holder], the holder
-- being the role itself, the group, PUBLIC, or '' (another way: a membership, ownership, a column
-- grant).
WITH grp AS (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %(group)s),
agents AS (
    SELECT r.oid, r.rolname
      FROM pg_catalog.pg_roles r
     WHERE r.oid IN (SELECT m.member FROM pg_catalog.pg_auth_members m JOIN grp ON m.roleid = grp.oid)
        OR r.rolname = ANY (%(mapped)s::text[])
),
privs (priv, per_column) AS (
    VALUES ('SELECT', true), ('INSERT', true), ('UPDATE', true), ('REFERENCES', true),
           ('DELETE', false), ('TRUNCATE', false), ('TRIGGER', false)
)
SELECT a.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
       ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m
               JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
              WHERE m.member = a.oid AND g.rolname <> %(group)s ORDER BY 1) AS member_of,
       coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(c.relname, p.priv, CASE
                      WHEN EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) x
                                    WHERE x.grantee = a.oid AND x.privilege_type = p.priv)
                        THEN a.rolname::text
                      WHEN EXISTS (SELECT 1 FROM grp
                                    WHERE pg_catalog.has_table_privilege(grp.oid, c.oid, p.priv))
                        THEN %(group)s
                      WHEN EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) x
                                    WHERE x.grantee = 0 AND x.privilege_type = p.priv)
                        THEN 'PUBLIC'
                      ELSE '' END) ORDER BY c.relname, p.priv)
               FROM pg_catalog.pg_class c CROSS JOIN privs p
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND CASE WHEN c.relkind NOT IN ('r', 'p', 'v', 'm', 'f') THEN false  -- (as below)
                         WHEN p.per_column
                         THEN pg_catalog.has_any_column_privilege(a.oid, c.oid, p.priv)
                         ELSE pg_catalog.has_table_privilege(a.oid, c.oid, p.priv) END
              ), '[]'::json) AS table_rights,
       ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S'
                AND CASE WHEN c.relkind = 'S'  -- (the planner may test other relations first)
                         THEN pg_catalog.has_sequence_privilege(a.oid, c.oid, 'UPDATE') END
              ORDER BY 1) AS sequences_set,
       pg_catalog.has_schema_privilege(a.oid, 'public', 'CREATE') AS schema_create,
       pg_catalog.has_database_privilege(a.oid, pg_catalog.current_database(), 'CREATE')
           AS database_create
FROM agents a
JOIN pg_catalog.pg_roles r ON r.oid = a.oid
ORDER BY a.rolname;

-- name: agent_unknown_senders
-- doctor: the senders of agent_chat that are no registered agent (verify's probe aside), the
-- most recent first: how many messages, the last one's time, whether any came after the first
-- agent was registered, and how many such senders there are in all.
SELECT c.sender, count(*)::bigint, max(c.created_at),
       max(c.created_at) >= (SELECT min(a.created_at) FROM public.agentchat_agents a) AS since,
       count(*) OVER ()::bigint AS senders
FROM public.agent_chat c
WHERE c.sender <> 'agentchat-verify'
  AND NOT EXISTS (SELECT 1 FROM public.agentchat_agents a WHERE a.name = c.sender)
GROUP BY c.sender
ORDER BY 4 DESC, 3 DESC
LIMIT %(limit)s;
