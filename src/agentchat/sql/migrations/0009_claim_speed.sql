-- agentchat schema, version 9: what an agent's claims cost (issue 15; docs/performance.md).
--
-- 1. The own-marks check looks the session's agent up once per transaction, not once per mark.
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
--
-- 2. agentchat_fresh_statistics(): an agent calls it when it connects. Rows that arrive by
-- replication while an agent is offline leave the replica's statistics behind until autovacuum
-- analyses the table (up to a minute and more); without them the planner takes the GIN index on
-- mentions for a backlog's claim and sorts every matching row for each batch (100,000 waiting
-- messages drained at under 4,000 a second; 13,000 after ANALYZE, which took 0.1 s). The
-- function analyses agent_chat and agent_chat_processed when either changed by more than half
-- its size (and 1,000 rows) since it was last analysed, and skips a table whose lock it cannot
-- take at once (autovacuum is at it): an agent never waits on it. It runs as the schema's
-- owner, so an agent's role needs no right on the tables; what it can do is bounded by the
-- same rule, however often it is called.

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

CREATE FUNCTION public.agentchat_fresh_statistics() RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t        regclass;
    analysed text[] := '{}';
BEGIN
    FOREACH t IN ARRAY ARRAY['public.agent_chat'::regclass,
                             'public.agent_chat_processed'::regclass] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_stat_user_tables s
                     JOIN pg_catalog.pg_class c ON c.oid = s.relid
                    WHERE s.relid = t
                      AND s.n_mod_since_analyze > 1000 + 0.5 * greatest(c.reltuples, 0)) THEN
            BEGIN
                EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE NOWAIT', t);
                EXECUTE pg_catalog.format('ANALYZE %s', t);
                analysed := analysed || t::text;
            EXCEPTION WHEN lock_not_available THEN
                NULL;  -- being vacuumed or analysed: the statistics are on their way
            END;
        END IF;
    END LOOP;
    RETURN analysed;
END
$$;
COMMENT ON FUNCTION public.agentchat_fresh_statistics() IS
    'Analyse agent_chat and agent_chat_processed where they changed by more than half their'
    ' size since last analysed (agents call it when they connect); returns the tables analysed.';
