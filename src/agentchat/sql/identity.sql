-- Agent identity (schema version 7): the registry of agents and their login roles.
-- Loaded by agentchat.sql.queries; used by agentchat.identity (agentchat agent add/list/remove).

-- name: identity_lock
-- One agent add or remove at a time in this database (transaction lock).
SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('agentchat.identity'));

-- name: registry_exists
-- Whether this database has the agent registry (schema version 7 and later).
SELECT pg_catalog.to_regclass('public.agentchat_agents') IS NOT NULL;

-- name: agent_get
-- One agent's registry row.
SELECT name, role, channels, node, created_at FROM public.agentchat_agents WHERE name = %s;

-- name: session_agent
-- The agent the session's role is, NULL for any other role.
SELECT public.agentchat_session_agent();

-- name: may_silence_logging
-- Whether this session may turn statement logging off (superusers).
SELECT pg_catalog.current_setting('is_superuser') = 'on';

-- name: agent_by_role
-- The agent a role is registered for, if any.
SELECT name FROM public.agentchat_agents WHERE role = %s;

-- name: agent_list
-- Every registered agent, by name, with whether its role exists in this cluster.
SELECT a.name, a.role, a.channels, a.node, a.created_at,
       EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = a.role) AS role_exists
  FROM public.agentchat_agents a
 ORDER BY a.name;

-- name: agent_insert
-- Register an agent: its name, its role, its channels, this node.
INSERT INTO public.agentchat_agents (name, role, channels, node)
VALUES (%(name)s, %(role)s, %(channels)s::text[], public.agentchat_node());

-- name: agent_set_channels
-- An existing agent's channels, replaced.
UPDATE public.agentchat_agents SET channels = %(channels)s::text[] WHERE name = %(name)s;

-- name: agent_delete
-- Forget an agent.
DELETE FROM public.agentchat_agents WHERE name = %s;

-- name: identity_role_exists
-- Whether a role exists in this cluster.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s);

-- name: role_is_agent_login
-- Whether a role looks like one agent add made: it can log in, is a member of the agents'
-- group, and holds no special attributes.
SELECT r.rolcanlogin AND NOT (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication
                              OR r.rolbypassrls)
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                     JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                    WHERE m.member = r.oid AND g.rolname = %(group)s)
  FROM pg_catalog.pg_roles r WHERE r.rolname = %(role)s;

-- name: create_agent_group
-- The group role that holds an agent's rights (cluster-wide, no login).
CREATE ROLE {group} NOLOGIN;

-- name: grant_agent_group
-- What an agent needs in this database, and nothing more (docs/identity.md).
GRANT CONNECT ON DATABASE {database} TO {group};
GRANT USAGE ON SCHEMA public TO {group};
GRANT SELECT ON public.agent_chat, public.memory_embeddings, public.agentchat_agents TO {group};
GRANT SELECT, INSERT, UPDATE ON public.agent_chat_processed TO {group};
GRANT EXECUTE ON FUNCTION public.send_agent_message(text, text, text[], text, bigint),
    public.send_agent_reply(text, text, text[], text, bigint, text) TO {group};

-- name: create_agent_role
-- An agent's login role, a member of the agents' group; carries a password (its SCRAM verifier).
CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    INHERIT PASSWORD {password} IN ROLE {group};

-- name: drop_agent_role
-- An agent's role, dropped by agent remove (it owns nothing: agent add gives it no objects).
DROP ROLE {role};

-- name: role_sessions
-- How many sessions are connected as a role right now.
SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = %s;

-- name: terminate_role_sessions
-- End the sessions of a removed agent's role, so it cannot keep acting.
SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = %s;
