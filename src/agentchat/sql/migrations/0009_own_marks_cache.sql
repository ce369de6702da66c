-- agentchat schema, version 9: the own-marks check looks the session's agent up once per
-- transaction, not once per mark (issue 15).
--
-- trg_own_marks_agent_chat_processed (version 7) makes an agent's mark for another agent fail
-- with a message that names both. It called two SECURITY DEFINER lookups of the session's
-- agent for every row: about 20 µs a mark, the largest cost of recording a batch. The answer
-- (the agent's name, '!' for an agent's role that is not registered here, '' for any other
-- role) is now kept for the rest of the transaction in the setting agentchat.session_agent,
-- beside the role it was found for, and looked up again when session_user differs.
--
-- The setting decides nothing: row-level security (agentchat_agent_marks) is what refuses a
-- mark for another agent. A session that forges the setting changes only which error it gets:
-- this trigger's, naming the agents, or the policy's.

CREATE OR REPLACE FUNCTION public.agent_chat_processed_own_marks() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cached text := pg_catalog.current_setting('agentchat.session_agent', true);
    me     text;
BEGIN
    -- '<agent> <role>': an agent's name has no space, so the first one ends it
    IF cached IS NOT NULL AND cached <> ''
       AND pg_catalog.substr(cached, pg_catalog.strpos(cached, ' ') + 1) = SESSION_USER THEN
        me := pg_catalog.split_part(cached, ' ', 1);
    ELSE
        me := coalesce(public.agentchat_session_agent(),
                       CASE WHEN public.agentchat_session_is_agent() THEN '!' ELSE '' END);
        PERFORM pg_catalog.set_config('agentchat.session_agent', me || ' ' || SESSION_USER,
                                      true);
    END IF;
    IF me = '!' THEN
        RAISE EXCEPTION 'role % is an agent''s role, but no agent of database "%"', SESSION_USER,
            pg_catalog.current_database()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'register it here (agentchat agent add), or wait for the registry row'
                         ' to arrive from where the agent was added';
    END IF;
    IF me <> '' AND NEW.agent IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'agent % cannot record deliveries of agent %', me, NEW.agent
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('role %s is agent %s: it listens as %s only',
                                           SESSION_USER, me, me);
    END IF;
    RETURN NEW;
END
$$;
