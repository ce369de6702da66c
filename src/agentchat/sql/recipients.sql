-- The registry of agents as senders read it (schema version 7's agentchat_agents): recipients are
-- checked against it. Loaded by agentchat.sql.queries; used by agentchat.agents.recipients.

-- name: registry_readable
-- Whether this database has the registry and this role may read it (false before schema 7, or
-- for a role without SELECT on it: then no recipient is checked).
SELECT coalesce(r.oid IS NOT NULL AND pg_catalog.has_table_privilege(r.oid, 'SELECT'), false)
FROM (SELECT pg_catalog.to_regclass('public.agentchat_agents')::oid AS oid) r;

-- name: registry_names
-- The registered agents' names (none: no recipient is checked).
SELECT a.name FROM public.agentchat_agents a ORDER BY a.name;
