-- Node identity (schema version 6): this database's node number, its registry row, and the
-- rows its number has written. Used by agentchat.nodes.

-- name: node_number
-- This database's node number (agentchat_settings key node); NULL when unset.
SELECT public.agentchat_node();

-- name: node_number_if_missing
-- Give this database a random node number when it has none (as migration 0006 does).
INSERT INTO public.agentchat_settings (key, value)
VALUES ('node', (1 + pg_catalog.floor(pg_catalog.random() * 1023))::integer::text)
ON CONFLICT (key) DO NOTHING;

-- name: node_lock
-- One change of this database's node number or registry row at a time (transaction lock).
SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('agentchat_nodes'));

-- name: node_registry
-- Every node this database knows of: its own row and those replicated to it.
SELECT n.node, n.name, n.conninfo, n.parent
FROM public.agentchat_nodes n
ORDER BY n.node, n.name;

-- name: node_renumber_own_row
-- Move this database's own registry row (old number, name) to its new number.
UPDATE public.agentchat_nodes n SET node = %(new)s
WHERE n.node = %(old)s AND n.name = %(name)s;

-- name: node_forget_own_row
-- Remove this database's own registry row under its former name (it registers anew).
DELETE FROM public.agentchat_nodes n WHERE n.node = %(node)s AND n.name = %(name)s;

-- name: node_register_own_row
-- Insert or refresh this database's own registry row.
INSERT INTO public.agentchat_nodes (node, name, conninfo, parent)
VALUES (%(node)s, %(name)s, %(conninfo)s, %(parent)s)
ON CONFLICT (node, name) DO UPDATE
SET conninfo = EXCLUDED.conninfo, parent = EXCLUDED.parent;

-- name: node_own_rows
-- How many messages here carry a node number in their id (agentchat_next_id()'s, not legacy).
SELECT count(*)::bigint
FROM public.agent_chat c
WHERE c.id >= 4503599627370496 AND ((c.id >> 12) & 1023) = %s;
