-- agentchat schema, version 2: what replication needs.
--
-- 1. The publication carries memory_embeddings rows of the chat with a row filter
--    (source_type = 'agent_chat'). PostgreSQL allows UPDATE and DELETE on a table published with
--    a row filter only when the filter's columns are in the replica identity, so the replica
--    identity becomes the unique (source_type, source_id) key instead of the primary key.
ALTER TABLE public.memory_embeddings REPLICA IDENTITY USING INDEX memory_embeddings_source_key;

-- 2. Node settings kept by the installer (not replicated): on a replica, which source it
--    follows, so the guard below can say where to write instead.
CREATE TABLE public.agentchat_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
COMMENT ON TABLE public.agentchat_settings IS
    'Per-database settings written by agentchat install; never replicated.';

-- 3. Replicas refuse local writes to agent_chat. The trigger is created DISABLED; the installer
--    sets it to ORIGIN on subscribers (so it fires for local inserts but never for replicated
--    rows, which the apply worker writes in replica mode) and back to DISABLED elsewhere.
CREATE FUNCTION public.agent_chat_refuse_local_writes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    source text;
BEGIN
    SELECT s.value INTO source FROM public.agentchat_settings s WHERE s.key = 'replica_of';
    RAISE EXCEPTION 'agent_chat in database "%" is a replica: write to its source %',
        pg_catalog.current_database(), coalesce(source, '(see pg_subscription)')
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'send messages to the source database; they arrive here by replication';
END
$$;

CREATE TRIGGER trg_guard_replica_writes
    BEFORE INSERT ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_refuse_local_writes();
ALTER TABLE public.agent_chat DISABLE TRIGGER trg_guard_replica_writes;
