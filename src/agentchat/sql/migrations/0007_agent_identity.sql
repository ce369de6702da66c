-- agentchat schema, version 7: agent identity (issue 14; docs/identity.md). An agent may have a
-- login role of its own; the database then enforces who it is.
--
-- 1. public.agentchat_agents: the registry, one row per agent: its name, its role (the mapping
--    lives here: agentchat agent add makes the role ac_<name>, or a hashed name when that one is
--    taken), the channels it reads, and the node where it was added. REPLICA IDENTITY FULL: the
--    two-way links replicate it with a row filter on node.
-- 2. public.agentchat_session_agent(): the agent the session's role belongs to (session_user,
--    so SET ROLE and SECURITY DEFINER functions do not change it), else NULL. Everything below
--    applies only to agent sessions: a database with no registered agent, and every role that
--    is not an agent's (the owner, superusers, the seed's plain INSERT, replication roles,
--    tools), behaves as before. public.agentchat_session_is_agent() also counts a direct member
--    of the group agentchat_agent that this database's registry does not know (an agent added
--    elsewhere, its registry row not here yet): it is an agent with no name, which reads and
--    sends nothing. Fail closed: the group's grants never give an unknown agent everything.
-- 3. Row-level security on agent_chat, agent_chat_processed and memory_embeddings (ENABLE, not
--    FORCE: the owner keeps full access; superusers and the apply worker bypass it). Permissive
--    policies: a non-agent keeps whatever its grants give; an agent reads the messages it sent,
--    those that mention it or '*', and those of its channels; only its own delivery marks; and
--    only the embedding rows of messages it may read.
-- 4. send_agent_message and send_agent_reply become SECURITY DEFINER (an agent's role has no
--    INSERT on agent_chat). For an agent session the sender must be that agent, every mention
--    '*' or a registered agent, reply_to a message it may read and a reply key its own. Any
--    other session needs INSERT on agent_chat, as it did when the functions ran with its rights.

-- 1 -----------------------------------------------------------------------------------------

CREATE TABLE public.agentchat_agents (
    name       text        PRIMARY KEY
               CONSTRAINT agentchat_agents_name_valid CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    role       name        NOT NULL UNIQUE,
    channels   text[]      NOT NULL DEFAULT '{}',
    node       integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.agentchat_agents IS
    'Registered agents: name, the login role that is this agent (session_user), the channels it'
    ' reads, the node where it was added. Written by agentchat agent add and remove.';
ALTER TABLE public.agentchat_agents REPLICA IDENTITY FULL;

-- 2 -----------------------------------------------------------------------------------------

CREATE FUNCTION public.agentchat_session_agent() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.name FROM public.agentchat_agents a WHERE a.role = SESSION_USER
$$;
COMMENT ON FUNCTION public.agentchat_session_agent() IS
    'The registered agent whose role is session_user; NULL for every other role.';

CREATE FUNCTION public.agentchat_session_is_agent() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM public.agentchat_agents a WHERE a.role = SESSION_USER)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
                     JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                     JOIN pg_catalog.pg_roles u ON u.oid = m.member
                    WHERE g.rolname = 'agentchat_agent' AND u.rolname = SESSION_USER)
$$;
COMMENT ON FUNCTION public.agentchat_session_is_agent() IS
    'Whether session_user is an agent''s role: registered here, or a member of agentchat_agent.';

CREATE FUNCTION public.agentchat_session_channels() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT a.channels FROM public.agentchat_agents a
                      WHERE a.role = SESSION_USER), '{}')
$$;
COMMENT ON FUNCTION public.agentchat_session_channels() IS
    'The channels the session''s agent reads (empty for every other role).';

-- 3 -----------------------------------------------------------------------------------------

ALTER TABLE public.agent_chat ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agent_chat_processed ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.memory_embeddings ENABLE ROW LEVEL SECURITY;

-- non-agents: whatever their grants give, for every command
CREATE POLICY agentchat_not_agent ON public.agent_chat
    USING (NOT (SELECT public.agentchat_session_is_agent()))
    WITH CHECK (NOT (SELECT public.agentchat_session_is_agent()));
CREATE POLICY agentchat_not_agent ON public.agent_chat_processed
    USING (NOT (SELECT public.agentchat_session_is_agent()))
    WITH CHECK (NOT (SELECT public.agentchat_session_is_agent()));
CREATE POLICY agentchat_not_agent ON public.memory_embeddings
    USING (NOT (SELECT public.agentchat_session_is_agent()))
    WITH CHECK (NOT (SELECT public.agentchat_session_is_agent()));

-- an agent reads what it sent, what mentions it or everyone, and its channels' messages
CREATE POLICY agentchat_agent_reads ON public.agent_chat FOR SELECT
    USING ((SELECT public.agentchat_session_agent()) IS NOT NULL
           AND (sender = (SELECT public.agentchat_session_agent())
                OR mentions && ARRAY[(SELECT public.agentchat_session_agent()), '*']
                OR ARRAY[channel] && (SELECT public.agentchat_session_channels())));

-- an agent's own delivery marks, and no other agent's
CREATE POLICY agentchat_agent_marks ON public.agent_chat_processed
    USING (agent = (SELECT public.agentchat_session_agent()))
    WITH CHECK (agent = (SELECT public.agentchat_session_agent()));

-- an agent's mark for another agent is refused with a message that says so (BEFORE triggers
-- run before the policies' WITH CHECK, whose own error names only the table)
CREATE FUNCTION public.agent_chat_processed_own_marks() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me text := public.agentchat_session_agent();
BEGIN
    IF me IS NULL AND public.agentchat_session_is_agent() THEN
        RAISE EXCEPTION 'role % is an agent''s role, but no agent of database "%"', SESSION_USER,
            pg_catalog.current_database()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register it here (agentchat agent add), or wait for the registry row'
                         ' to arrive from where the agent was added';
    END IF;
    IF me IS NOT NULL AND NEW.agent IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'agent % cannot record deliveries of agent %', me, NEW.agent
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('role %s is agent %s: it listens as %s only',
                                           SESSION_USER, me, me);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_own_marks_agent_chat_processed
    BEFORE INSERT OR UPDATE ON public.agent_chat_processed
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_processed_own_marks();

-- the embedding rows of the messages an agent may read: agentchat_agent_reads' rule, in a
-- function, so that the policy needs no privilege on agent_chat (a role that may read
-- memory_embeddings but not agent_chat keeps what its grants give)
CREATE FUNCTION public.agentchat_agent_may_read(message_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT public.agentchat_session_agent() IS NOT NULL AND EXISTS (
        SELECT 1 FROM public.agent_chat c
         WHERE c.id = message_id
           AND (c.sender = public.agentchat_session_agent()
                OR c.mentions && ARRAY[public.agentchat_session_agent(), '*']
                OR ARRAY[c.channel] && public.agentchat_session_channels()))
$$;
COMMENT ON FUNCTION public.agentchat_agent_may_read(bigint) IS
    'Whether the session''s agent may read this message (agentchat_agent_reads'' rule).';
CREATE POLICY agentchat_agent_searches ON public.memory_embeddings FOR SELECT
    USING (source_type = 'agent_chat'
           AND (SELECT public.agentchat_session_agent()) IS NOT NULL
           AND public.agentchat_agent_may_read(source_id));

-- 4 -----------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.send_agent_message(
    sender   text,
    message  text,
    mentions text[] DEFAULT '{}',
    channel  text DEFAULT 'general',
    reply_to bigint DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me             text := public.agentchat_session_agent();
    clean_sender   text := pg_catalog.lower(pg_catalog.btrim(sender));
    clean_channel  text := pg_catalog.btrim(channel);
    clean_mentions text[];
    bad            text;
    unknown        text[];
    new_id         bigint;
BEGIN
    IF me IS NULL AND public.agentchat_session_is_agent() THEN
        RAISE EXCEPTION 'role % is an agent''s role, but no agent of database "%"', SESSION_USER,
            pg_catalog.current_database()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register it here (agentchat agent add), or wait for the registry row'
                         ' to arrive from where the agent was added';
    END IF;
    IF me IS NULL AND NOT pg_catalog.has_table_privilege(SESSION_USER, 'public.agent_chat',
                                                         'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table agent_chat'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'send as a registered agent''s role, or grant INSERT on agent_chat';
    END IF;
    IF clean_sender IS NULL OR clean_sender = '' THEN
        RAISE EXCEPTION 'sender must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF clean_sender !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid sender name "%"', pg_catalog.left(sender, 70)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'names are 1 to 63 characters: letters, digits, _ . - (lowercased)';
    END IF;
    IF me IS NOT NULL AND clean_sender <> me THEN
        RAISE EXCEPTION 'agent % cannot send as %', me, clean_sender
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('role %s is agent %s: it sends as %s only',
                                           SESSION_USER, me, me);
    END IF;
    IF message IS NULL OR pg_catalog.btrim(message) = '' THEN
        RAISE EXCEPTION 'message must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF clean_channel IS NULL OR clean_channel !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid channel name "%"', pg_catalog.left(channel, 70)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'channels are 1 to 63 characters: letters, digits, _ . : / -';
    END IF;
    SELECT coalesce(pg_catalog.array_agg(DISTINCT pg_catalog.lower(pg_catalog.btrim(m))), '{}')
      INTO clean_mentions
      FROM pg_catalog.unnest(coalesce(mentions, '{}')) AS m;
    SELECT m INTO bad FROM pg_catalog.unnest(clean_mentions) AS m
     WHERE m <> '*' AND m !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invalid mention "%"', pg_catalog.left(bad, 70)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'names are 1 to 63 characters: letters, digits, _ . - (or * for everyone)';
    END IF;
    IF pg_catalog.cardinality(clean_mentions) > 64 THEN
        RAISE EXCEPTION 'too many mentions (%; at most 64)', pg_catalog.cardinality(clean_mentions)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF me IS NOT NULL THEN
        SELECT pg_catalog.array_agg(m ORDER BY m) INTO unknown
          FROM pg_catalog.unnest(clean_mentions) AS m
         WHERE m <> '*' AND NOT EXISTS (SELECT 1 FROM public.agentchat_agents a WHERE a.name = m);
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'unknown agent(s): %', pg_catalog.array_to_string(unknown, ', ')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'an agent''s messages go to registered agents (agentchat agent list)'
                             ' or * for everyone';
        END IF;
    END IF;
    IF send_agent_message.reply_to IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM public.agent_chat c
         WHERE c.id = send_agent_message.reply_to
           AND (me IS NULL OR c.sender = me OR c.mentions && ARRAY[me, '*']
                OR c.channel = ANY (public.agentchat_session_channels()))
    ) THEN
        RAISE EXCEPTION 'reply_to % is not a message', send_agent_message.reply_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.agent_chat (channel, sender, message, mentions, reply_to)
    VALUES (clean_channel, clean_sender, message, clean_mentions, send_agent_message.reply_to)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION public.send_agent_reply(
    sender    text,
    message   text,
    mentions  text[],
    channel   text,
    reply_to  bigint,
    reply_key text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me       text := public.agentchat_session_agent();
    existing bigint;
    new_id   bigint;
BEGIN
    IF me IS NULL AND public.agentchat_session_is_agent() THEN
        RAISE EXCEPTION 'role % is an agent''s role, but no agent of database "%"', SESSION_USER,
            pg_catalog.current_database()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register it here (agentchat agent add), or wait for the registry row'
                         ' to arrive from where the agent was added';
    END IF;
    IF me IS NULL AND NOT pg_catalog.has_table_privilege(SESSION_USER, 'public.agent_chat',
                                                         'INSERT') THEN
        RAISE EXCEPTION 'permission denied for table agent_chat'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'send as a registered agent''s role, or grant INSERT on agent_chat';
    END IF;
    IF reply_key IS NULL OR reply_to IS NULL THEN
        RAISE EXCEPTION 'a delivery''s reply needs reply_to and reply_key'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF me IS NOT NULL AND pg_catalog.lower(pg_catalog.btrim(sender)) <> me THEN
        RAISE EXCEPTION 'agent % cannot send as %', me, pg_catalog.lower(pg_catalog.btrim(sender))
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('role %s is agent %s: it sends as %s only',
                                           SESSION_USER, me, me);
    END IF;
    IF me IS NOT NULL AND pg_catalog.starts_with(reply_key, me || ':') IS NOT TRUE THEN
        RAISE EXCEPTION 'agent % cannot use the reply key of another agent', me
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'a delivery''s reply key starts with its agent''s name and a colon';
    END IF;
    SELECT c.id INTO existing FROM public.agent_chat c
     WHERE c.reply_key = send_agent_reply.reply_key;
    IF FOUND THEN
        RETURN existing;  -- posted by an interrupted delivery of the same message
    END IF;
    new_id := public.send_agent_message(sender, message, mentions, channel, reply_to);
    UPDATE public.agent_chat c SET reply_key = send_agent_reply.reply_key WHERE c.id = new_id;
    RETURN new_id;
END
$$;
