-- agentchat schema, version 5: messages are immutable, a replica cannot be corrupted, and no row
-- can poison a listener.
--
-- 1. Names are normalised and checked at the database, for every writer (send_agent_message,
--    the seed's raw INSERT, any tool): a BEFORE INSERT trigger lowercases and trims the sender
--    and the mentions, drops duplicates, and refuses a NULL or invalid mention; CHECK constraints
--    hold whatever a client inserts. They are added NOT VALID: rows written before this version
--    keep what they hold (listeners skip what they cannot read), every new row is checked.
--    Valid names bound the NOTIFY payload (id, channel, sender, mentions) far below 8000 bytes.
-- 2. A replicated row that is already here is skipped, not an error. The same trigger fires for
--    replicated rows (ALWAYS): a row whose id exists with the same content is dropped quietly (a
--    history copied again); one whose id holds a *different* message raises an error naming both
--    (a true conflict: the apply worker retries it and status shows it, it is never lost quietly).
-- 3. Messages are immutable on every database. UPDATE of what a message says (id, sender,
--    channel, message, mentions, created_at) is refused; DELETE and TRUNCATE are refused unless
--    the transaction asked for maintenance (agentchat prune and verify's probe cleanup run
--    SELECT set_config('agentchat.maintenance', 'on', true) first). These triggers are ORIGIN:
--    they never fire for what replication applies.
-- 4. A replica refuses every local write: the guard now covers UPDATE, DELETE and TRUNCATE too.
-- 5. A replicated embedding row whose message already has one here updates it instead of
--    colliding with the unique (source_type, source_id) key.

-- 1 and 2 -----------------------------------------------------------------------------------

CREATE FUNCTION public.agent_chat_valid_mentions(names text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT names IS NOT NULL
       AND coalesce(pg_catalog.array_ndims(names), 1) = 1
       AND pg_catalog.cardinality(names) <= 64
       AND pg_catalog.array_position(names, NULL) IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(names) AS m
                        WHERE m <> '*' AND m !~ '^[a-z0-9][a-z0-9_.-]{0,62}$')
$$;
COMMENT ON FUNCTION public.agent_chat_valid_mentions(text[]) IS
    'agent_chat.mentions holds at most 64 lowercased agent names (or *), none NULL.';

CREATE FUNCTION public.agent_chat_admit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    replicated boolean := pg_catalog.current_setting('session_replication_role') = 'replica';
    clean      text[];
    bad        text;
    existing   record;
BEGIN
    IF NEW.mentions IS NULL THEN
        NEW.mentions := '{}';
    END IF;
    IF NOT replicated AND pg_catalog.array_position(NEW.mentions, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'mentions must not contain NULL'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'name each agent, or * for everyone';
    END IF;
    -- a replicated row from a source older than this version may hold what we now refuse: it
    -- is made readable (NULLs and invalid names dropped) rather than stopping replication
    SELECT coalesce(pg_catalog.array_agg(DISTINCT n ORDER BY n), '{}') INTO clean
      FROM (SELECT pg_catalog.lower(pg_catalog.btrim(m)) AS n
              FROM pg_catalog.unnest(NEW.mentions) AS m WHERE m IS NOT NULL) AS names;
    IF replicated THEN
        SELECT coalesce(pg_catalog.array_agg(n ORDER BY n), '{}') INTO clean
          FROM pg_catalog.unnest(clean) AS n
         WHERE n = '*' OR n ~ '^[a-z0-9][a-z0-9_.-]{0,62}$';
        clean := clean[1:64];
    ELSE
        SELECT n INTO bad FROM pg_catalog.unnest(clean) AS n
         WHERE n <> '*' AND n !~ '^[a-z0-9][a-z0-9_.-]{0,62}$' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid mention "%"', pg_catalog.left(bad, 70)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'names are 1 to 63 characters: letters, digits, _ . - (or * for everyone)';
        END IF;
        IF pg_catalog.cardinality(clean) > 64 THEN
            RAISE EXCEPTION 'too many mentions (%; at most 64)', pg_catalog.cardinality(clean)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    NEW.mentions := clean;
    NEW.sender := pg_catalog.lower(pg_catalog.btrim(NEW.sender));
    IF replicated THEN
        SELECT c.sender, c.channel, c.message, c.mentions, c.created_at INTO existing
          FROM public.agent_chat c WHERE c.id = NEW.id;
        IF FOUND THEN
            IF (existing.sender, existing.channel, existing.message, existing.created_at)
               IS NOT DISTINCT FROM (NEW.sender, NEW.channel, NEW.message, NEW.created_at) THEN
                RETURN NULL;  -- already here: a history copied again, or a retried transaction
            END IF;
            RAISE EXCEPTION 'replicated message % conflicts with a different message % already'
                ' holds its id in database "%"', NEW.id, NEW.id, pg_catalog.current_database()
                USING ERRCODE = 'unique_violation',
                      DETAIL = pg_catalog.format('here: sender %s at %s; arriving: sender %s at %s',
                                                 existing.sender, existing.created_at,
                                                 NEW.sender, NEW.created_at),
                      HINT = 'run agentchat doctor: it names the row and the repair';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trg_admit_agent_chat
    BEFORE INSERT ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_admit();
ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER trg_admit_agent_chat;

ALTER TABLE public.agent_chat
    ADD CONSTRAINT agent_chat_mentions_valid
        CHECK (public.agent_chat_valid_mentions(mentions)) NOT VALID;

-- 3 -----------------------------------------------------------------------------------------

CREATE FUNCTION public.agent_chat_keep_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (OLD.id, OLD.sender, OLD.channel, OLD.message, OLD.mentions, OLD.created_at)
           IS DISTINCT FROM (NEW.id, NEW.sender, NEW.channel, NEW.message, NEW.mentions,
                             NEW.created_at) THEN
            RAISE EXCEPTION 'agent_chat messages are immutable: message % cannot be changed', OLD.id
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'send a new message (a reply, with reply_to) instead';
        END IF;
        RETURN NEW;
    END IF;
    IF pg_catalog.current_setting('agentchat.maintenance', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'agent_chat messages are immutable: % refused', TG_OP
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'old messages are removed with agentchat prune, at the database where'
                         ' they were written';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_immutable_agent_chat
    BEFORE UPDATE OR DELETE ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_keep_immutable();
CREATE TRIGGER trg_immutable_agent_chat_truncate
    BEFORE TRUNCATE ON public.agent_chat
    FOR EACH STATEMENT EXECUTE FUNCTION public.agent_chat_keep_immutable();

-- 4 -----------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION public.agent_chat_refuse_local_writes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    source text;
BEGIN
    SELECT s.value INTO source FROM public.agentchat_settings s WHERE s.key = 'replica_of';
    RAISE EXCEPTION 'agent_chat in database "%" is a replica: % refused; write to its source %',
        pg_catalog.current_database(), TG_OP, coalesce(source, '(see pg_subscription)')
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'messages are written, and pruned, at the source; they arrive here by'
                     ' replication';
END
$$;

-- The guard keeps the mode the installer gave it (ORIGIN on a replica, DISABLED elsewhere), so
-- a live source or replica is never without it, nor wrongly with it, between this migration
-- and the installer's policy step.
DO $$
DECLARE
    mode "char" := coalesce((SELECT t.tgenabled FROM pg_catalog.pg_trigger t
                              WHERE t.tgrelid = 'public.agent_chat'::regclass
                                AND t.tgname = 'trg_guard_replica_writes'), 'D');
    clause text := CASE mode WHEN 'O' THEN 'ENABLE' WHEN 'A' THEN 'ENABLE ALWAYS'
                             WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'DISABLE' END;
BEGIN
    DROP TRIGGER IF EXISTS trg_guard_replica_writes ON public.agent_chat;
    CREATE TRIGGER trg_guard_replica_writes
        BEFORE INSERT OR UPDATE OR DELETE ON public.agent_chat
        FOR EACH ROW EXECUTE FUNCTION public.agent_chat_refuse_local_writes();
    CREATE TRIGGER trg_guard_replica_truncate
        BEFORE TRUNCATE ON public.agent_chat
        FOR EACH STATEMENT EXECUTE FUNCTION public.agent_chat_refuse_local_writes();
    EXECUTE pg_catalog.format('ALTER TABLE public.agent_chat %s TRIGGER trg_guard_replica_writes',
                              clause);
    EXECUTE pg_catalog.format(
        'ALTER TABLE public.agent_chat %s TRIGGER trg_guard_replica_truncate', clause);
END
$$;

-- 5 -----------------------------------------------------------------------------------------

CREATE FUNCTION public.memory_embeddings_merge_replicated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE public.memory_embeddings e
       SET content = NEW.content, content_hash = NEW.content_hash, embedding = NEW.embedding,
           model = NEW.model, created_at = NEW.created_at, updated_at = NEW.updated_at
     WHERE e.source_type = NEW.source_type AND e.source_id = NEW.source_id;
    IF FOUND THEN
        RETURN NULL;  -- this message's row was here already: now it holds the arriving values
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trg_merge_replicated_embedding
    BEFORE INSERT ON public.memory_embeddings
    FOR EACH ROW EXECUTE FUNCTION public.memory_embeddings_merge_replicated();
-- REPLICA: only for rows that replication applies; local inserts keep their own semantics
ALTER TABLE public.memory_embeddings ENABLE REPLICA TRIGGER trg_merge_replicated_embedding;
