-- agentchat install --compat nova: what NOVA's current agent-chat clients need (issue 16;
-- docs/nova.md), over agentchat's own tables: one set of messages and marks, seen through
-- NOVA's names. Idempotent; runs in one transaction under the migration lock.
--
-- Everything of NOVA's own shape lives in the schema agentchat_nova, which the installer puts
-- first on the search_path of NOVA's roles only (ALTER ROLE ... IN DATABASE ... SET
-- search_path). Nobody else sees it: an overload of send_agent_message in public would make
-- every 3-argument call ambiguous (function send_agent_message(unknown, unknown, text[]) is not
-- unique). Only two objects must be in public, because NOVA's tools name them so:
-- public.schema_version (their install.sh reads MAX(version) there; 4 means "up to date, apply
-- nothing") and public.agent_chat_id_seq (their register-agent.sh grants USAGE on it; agentchat
-- never uses it).
--
-- Integer ids. NOVA's clients cast ids to integer (p_reply_to => $5::integer, RETURNS integer),
-- and agentchat's ids are 63-bit (node bits, docs/replication.md). Each message therefore has a
-- local integer ref for NOVA's clients, in agentchat_nova.chat_refs: a legacy id below 2^30 (a
-- NOVA database moved onto agentchat keeps its serial ids) is its own ref; every other id gets
-- the next number of a local sequence from 2^30 on, so the two ranges never meet. Refs are local
-- to a database: an ALWAYS trigger gives one to every row, written here or replicated, and the
-- table is never published.
--
-- The views are security_invoker: NOVA's roles act with their own grants, and an agent role's
-- row-level security applies as it does on agentchat's tables.

CREATE SCHEMA IF NOT EXISTS agentchat_nova;
COMMENT ON SCHEMA agentchat_nova IS
    'NOVA''s agent-chat names over agentchat''s tables (agentchat install --compat nova).';
GRANT USAGE ON SCHEMA agentchat_nova TO PUBLIC;

-- integer refs -------------------------------------------------------------------------------

CREATE SEQUENCE IF NOT EXISTS agentchat_nova.chat_ref_seq
    AS integer START WITH 1073741824 MINVALUE 1073741824 NO CYCLE;
CREATE TABLE IF NOT EXISTS agentchat_nova.chat_refs (
    ref     integer PRIMARY KEY,
    chat_id bigint  NOT NULL UNIQUE
);
COMMENT ON TABLE agentchat_nova.chat_refs IS
    'The integer id NOVA''s clients see for each message (local; legacy ids below 2^30 are their'
    ' own ref, others numbered from 2^30).';
GRANT SELECT ON agentchat_nova.chat_refs TO PUBLIC;

-- the message a ref names; for a ref that names none, the foreign-key violation NOVA's code
-- expects of its own schema (SQLSTATE 23503, which their plugin tells apart)
CREATE OR REPLACE FUNCTION agentchat_nova.message_of(ref integer, relation text, key text)
RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    message bigint;
BEGIN
    SELECT r.chat_id INTO message FROM agentchat_nova.chat_refs r WHERE r.ref = message_of.ref;
    IF message IS NULL THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%_%_fkey"',
            relation, relation, key
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = pg_catalog.format('Key (%s)=(%s) is not present in table "agent_chat".',
                                             key, ref);
    END IF;
    RETURN message;
END
$$;

CREATE OR REPLACE FUNCTION agentchat_nova.new_ref(chat_id bigint) RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN chat_id < 1073741824 THEN chat_id::integer
                ELSE pg_catalog.nextval('agentchat_nova.chat_ref_seq')::integer END
$$;
REVOKE ALL ON FUNCTION agentchat_nova.new_ref(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION agentchat_nova.track_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO agentchat_nova.chat_refs (ref, chat_id)
        VALUES (agentchat_nova.new_ref(NEW.id), NEW.id)
        ON CONFLICT (chat_id) DO NOTHING;
    ELSE
        DELETE FROM agentchat_nova.chat_refs r WHERE r.chat_id = OLD.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION agentchat_nova.track_refs() FROM PUBLIC;

CREATE OR REPLACE TRIGGER trg_nova_refs_agent_chat
    AFTER INSERT OR DELETE ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION agentchat_nova.track_refs();
-- ALWAYS: replicated rows need a ref too (and a replicated deletion takes it away)
ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER trg_nova_refs_agent_chat;

INSERT INTO agentchat_nova.chat_refs (ref, chat_id)
SELECT agentchat_nova.new_ref(c.id), c.id
  FROM public.agent_chat c
 WHERE NOT EXISTS (SELECT 1 FROM agentchat_nova.chat_refs r WHERE r.chat_id = c.id)
 ORDER BY c.id;

-- marks by ref: a column of agentchat's marks (never replicated, so local like the refs), so
-- that NOVA's INSERT ... ON CONFLICT (chat_id, agent) finds its unique index through the view
ALTER TABLE public.agent_chat_processed ADD COLUMN IF NOT EXISTS nova_ref integer;
CREATE UNIQUE INDEX IF NOT EXISTS agent_chat_processed_nova_ref_idx
    ON public.agent_chat_processed (nova_ref, agent);
UPDATE public.agent_chat_processed p SET nova_ref = r.ref
  FROM agentchat_nova.chat_refs r
 WHERE r.chat_id = p.chat_id AND p.nova_ref IS DISTINCT FROM r.ref;

CREATE OR REPLACE FUNCTION agentchat_nova.mark_refs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.chat_id IS NULL OR (TG_OP = 'UPDATE' AND NEW.nova_ref IS DISTINCT FROM OLD.nova_ref
                               AND NEW.chat_id IS NOT DISTINCT FROM OLD.chat_id) THEN
        NEW.chat_id := agentchat_nova.message_of(NEW.nova_ref, 'agent_chat_processed', 'chat_id');
    ELSE
        SELECT r.ref INTO NEW.nova_ref FROM agentchat_nova.chat_refs r
         WHERE r.chat_id = NEW.chat_id;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION agentchat_nova.mark_refs() FROM PUBLIC;

CREATE OR REPLACE TRIGGER trg_nova_refs_agent_chat_processed
    BEFORE INSERT OR UPDATE ON public.agent_chat_processed
    FOR EACH ROW EXECUTE FUNCTION agentchat_nova.mark_refs();

-- NOVA's tables, as views -------------------------------------------------------------------

-- both generations' columns: the seed's (channel, mentions, created_at) and the current
-- plugin's (recipients, "timestamp", expires_at); an expired message is not shown
CREATE OR REPLACE VIEW agentchat_nova.agent_chat WITH (security_invoker = true) AS
SELECT r.ref        AS id,
       c.channel,
       c.sender,
       c.message,
       c.mentions,
       c.mentions   AS recipients,
       pr.ref       AS reply_to,
       c.created_at,
       c.created_at AS "timestamp",
       c.expires_at
  FROM public.agent_chat c
  JOIN agentchat_nova.chat_refs r ON r.chat_id = c.id
  LEFT JOIN agentchat_nova.chat_refs pr ON pr.chat_id = c.reply_to
 WHERE c.expires_at IS NULL OR c.expires_at > pg_catalog.now();
COMMENT ON VIEW agentchat_nova.agent_chat IS
    'agentchat''s messages with NOVA''s columns and integer ids; expired ones hidden.';
GRANT SELECT, INSERT ON agentchat_nova.agent_chat TO PUBLIC;

-- a raw INSERT through the view (the seed-era plugin's reply) is agentchat's INSERT, with the
-- caller's rights; RETURNING id gives the new message's ref
CREATE OR REPLACE FUNCTION agentchat_nova.agent_chat_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parent bigint;
    new_id bigint;
BEGIN
    IF NEW.reply_to IS NOT NULL THEN
        parent := agentchat_nova.message_of(NEW.reply_to, 'agent_chat', 'reply_to');
    END IF;
    INSERT INTO public.agent_chat (channel, sender, message, mentions, reply_to, created_at,
                                   expires_at)
    VALUES (coalesce(NEW.channel, 'general'), NEW.sender, NEW.message,
            coalesce(NEW.recipients, NEW.mentions, '{}'), parent,
            coalesce(NEW.created_at, NEW."timestamp", pg_catalog.now()), NEW.expires_at)
    RETURNING id INTO new_id;
    SELECT r.ref, c.channel, c.sender, c.message, c.mentions, c.mentions, pr.ref, c.created_at,
           c.created_at, c.expires_at
      INTO NEW
      FROM public.agent_chat c
      JOIN agentchat_nova.chat_refs r ON r.chat_id = c.id
      LEFT JOIN agentchat_nova.chat_refs pr ON pr.chat_id = c.reply_to
     WHERE c.id = new_id;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER agent_chat_insert
    INSTEAD OF INSERT ON agentchat_nova.agent_chat
    FOR EACH ROW EXECUTE FUNCTION agentchat_nova.agent_chat_insert();

-- agentchat's marks with NOVA's columns: a plain view of one table, so NOVA's INSERT ... ON
-- CONFLICT (chat_id, agent) DO UPDATE and its UPDATEs work through it as written
CREATE OR REPLACE VIEW agentchat_nova.agent_chat_processed WITH (security_invoker = true) AS
SELECT p.nova_ref AS chat_id,
       p.agent,
       p.status,
       p.received_at,
       p.routed_at,
       p.responded_at,
       p.error_message
  FROM public.agent_chat_processed p;
COMMENT ON VIEW agentchat_nova.agent_chat_processed IS
    'agentchat''s delivery marks with NOVA''s columns and integer ids.';
GRANT SELECT, INSERT, UPDATE, DELETE ON agentchat_nova.agent_chat_processed TO PUBLIC;

CREATE OR REPLACE VIEW agentchat_nova.v_agent_chat_recent WITH (security_invoker = true) AS
SELECT id, sender, message, recipients, reply_to, "timestamp"
  FROM agentchat_nova.agent_chat
 WHERE "timestamp" > pg_catalog.now() - interval '30 days'
 ORDER BY "timestamp" DESC;
GRANT SELECT ON agentchat_nova.v_agent_chat_recent TO PUBLIC;

CREATE OR REPLACE VIEW agentchat_nova.v_agent_chat_stats WITH (security_invoker = true) AS
SELECT count(*) AS total_messages,
       count(*) FILTER (WHERE "timestamp" > pg_catalog.now() - interval '24 hours')
           AS messages_24h,
       count(*) FILTER (WHERE "timestamp" > pg_catalog.now() - interval '7 days') AS messages_7d,
       count(DISTINCT sender) AS unique_senders,
       pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size('public.agent_chat'::regclass))
           AS table_size,
       min("timestamp") AS oldest_message,
       max("timestamp") AS newest_message
  FROM agentchat_nova.agent_chat;
GRANT SELECT ON agentchat_nova.v_agent_chat_stats TO PUBLIC;

-- NOVA's functions ----------------------------------------------------------------------------

-- NOVA's signature and checks (sender = the session's agent, or its role; recipients given;
-- never to oneself), then agentchat's send_agent_message, which checks an agent role as it
-- always does; p_ttl is stored as expires_at; returns the new message's ref
CREATE OR REPLACE FUNCTION agentchat_nova.send_agent_message(
    p_sender     text,
    p_message    text,
    p_recipients text[],
    p_ttl        interval DEFAULT NULL,
    p_reply_to   integer DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    me           text := coalesce(public.agentchat_session_agent(), SESSION_USER::text);
    v_sender     text := pg_catalog.lower(p_sender);
    v_recipients text[];
    parent       bigint;
    new_id       bigint;
BEGIN
    IF v_sender IS DISTINCT FROM me THEN
        RAISE EXCEPTION 'send_agent_message: sender must match session_user (got % but'
            ' connected as %)', p_sender, me
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_message IS NULL OR pg_catalog.btrim(p_message) = '' THEN
        RAISE EXCEPTION 'send_agent_message: message cannot be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_recipients IS NULL OR pg_catalog.array_length(p_recipients, 1) IS NULL THEN
        RAISE EXCEPTION 'send_agent_message: recipients cannot be NULL or empty — use'
            ' ARRAY[''*''] for broadcast'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_recipients := ARRAY(SELECT pg_catalog.lower(r) FROM pg_catalog.unnest(p_recipients) AS r);
    IF v_sender = ANY (v_recipients) THEN
        RAISE EXCEPTION 'send_agent_message: sender "%" is in the recipient list — agents'
            ' cannot message themselves (did you mean to address someone else?)', v_sender
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_reply_to IS NOT NULL THEN
        parent := agentchat_nova.message_of(p_reply_to, 'agent_chat', 'reply_to');
    END IF;
    new_id := public.send_agent_message(v_sender, p_message, v_recipients, 'general', parent);
    IF p_ttl IS NOT NULL THEN
        UPDATE public.agent_chat c SET expires_at = pg_catalog.now() + p_ttl WHERE c.id = new_id;
    END IF;
    RETURN (SELECT r.ref FROM agentchat_nova.chat_refs r WHERE r.chat_id = new_id);
END
$$;

-- NOVA's nightly reaper: messages older than the retention, and expired ones, with their marks
-- and embeddings (agentchat's forget triggers); returns how many messages went. A deletion of
-- a message written here replicates as agentchat prune's does. For a role whose grants let it
-- delete messages (NOVA's roles have DELETE on agent_chat): never an agent role.
CREATE OR REPLACE FUNCTION agentchat_nova.expire_old_chat(retention_days integer DEFAULT 90)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    before        text := pg_catalog.current_setting('agentchat.maintenance', true);
    deleted_count integer;
BEGIN
    IF NOT pg_catalog.has_table_privilege(SESSION_USER, 'public.agent_chat', 'DELETE') THEN
        RAISE EXCEPTION 'permission denied for table agent_chat'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'expire_old_chat deletes messages: run it as a role that may'
                         ' (GRANT DELETE ON agent_chat), as NOVA''s cron role has';
    END IF;
    PERFORM pg_catalog.set_config('agentchat.maintenance', 'on', true);
    DELETE FROM public.agent_chat c
     WHERE c.created_at < pg_catalog.now() - pg_catalog.make_interval(days => retention_days)
        OR c.expires_at <= pg_catalog.now();
    GET DIAGNOSTICS deleted_count = ROW_COUNT;
    PERFORM pg_catalog.set_config('agentchat.maintenance', coalesce(before, ''), true);
    RETURN deleted_count;
END
$$;

-- in public, because NOVA's tools name them so ---------------------------------------------

CREATE TABLE IF NOT EXISTS public.schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz DEFAULT now() NOT NULL,
    description text
);
COMMENT ON TABLE public.schema_version IS
    'NOVA agent-chat''s version handshake (agentchat install --compat nova): its install.sh'
    ' reads MAX(version); 4 is the schema agentchat_nova provides. agentchat''s own version is'
    ' in agentchat_migrations.';
INSERT INTO public.schema_version (version, description) VALUES
    (1, 'initial extraction from nova-mind'),
    (2, 'fix immutability trigger binding and make expire_old_chat SECURITY DEFINER'),
    (3, 'add schema sync infrastructure'),
    (4, 'agent-chat#4: cascade delete agent_chat_processed rows on parent message expiration,'
        ' validate FK')
ON CONFLICT (version) DO NOTHING;
GRANT SELECT ON public.schema_version TO PUBLIC;

CREATE SEQUENCE IF NOT EXISTS public.agent_chat_id_seq;
COMMENT ON SEQUENCE public.agent_chat_id_seq IS
    'Unused by agentchat (ids come from agentchat_next_id()): it exists so NOVA''s'
    ' register-agent.sh can GRANT USAGE on it (agentchat install --compat nova).';
