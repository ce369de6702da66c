-- agentchat schema, version 8: what NOVA's own agent-chat clients rely on (issue 16;
-- docs/nova.md), kept as one source of truth with agentchat's own columns.
--
-- 1. agent_chat_processed gains the seed schema's outcome columns. routed_at and responded_at
--    say when a mark became routed or responded: NOVA's plugin sets them itself, and a BEFORE
--    trigger fills them (and updated_at) for every other writer, agentchat's agents included.
--    The failure text is stored once, in error_message (the seed's name; the column error is
--    renamed to it), and error stays readable as a generated column of it.
-- 2. Two more outcomes, NOVA's: expired (the message's time to live ran out before the agent
--    took it; agentchat's agents record it instead of handing the message over) and skipped.
-- 3. agent_chat.expires_at: an optional time to live (NULL: never). NOVA's send_agent_message
--    takes it as p_ttl (agentchat install --compat nova). Replicated with the message, so every
--    database honours it. It is not part of what a message says: setting it is no edit.
-- 4. A raw INSERT by a role that may insert into agent_chat and nothing more (the seed's
--    plugin, NOVA's grants) works: the embedding queue is agentchat's own bookkeeping, so the
--    trigger that fills it runs with its owner's rights (SECURITY DEFINER, search_path pinned).

-- 1 -----------------------------------------------------------------------------------------

ALTER TABLE public.agent_chat_processed RENAME COLUMN error TO error_message;
ALTER TABLE public.agent_chat_processed
    ADD COLUMN routed_at    timestamptz,
    ADD COLUMN responded_at timestamptz,
    ADD COLUMN error text GENERATED ALWAYS AS (error_message) STORED;
UPDATE public.agent_chat_processed
   SET routed_at = CASE WHEN status = 'routed' THEN updated_at END,
       responded_at = CASE WHEN status = 'responded' THEN updated_at END
 WHERE status IN ('routed', 'responded');

CREATE FUNCTION public.agent_chat_processed_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := pg_catalog.now();
        IF NEW.status = 'routed' AND OLD.status IS DISTINCT FROM 'routed'
           AND NEW.routed_at IS NOT DISTINCT FROM OLD.routed_at THEN
            NEW.routed_at := pg_catalog.now();
        END IF;
        IF NEW.status = 'responded' AND OLD.status IS DISTINCT FROM 'responded'
           AND NEW.responded_at IS NOT DISTINCT FROM OLD.responded_at THEN
            NEW.responded_at := pg_catalog.now();
        END IF;
    ELSE
        IF NEW.status = 'routed' AND NEW.routed_at IS NULL THEN
            NEW.routed_at := pg_catalog.now();
        END IF;
        IF NEW.status = 'responded' AND NEW.responded_at IS NULL THEN
            NEW.responded_at := pg_catalog.now();
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_stamp_agent_chat_processed
    BEFORE INSERT OR UPDATE ON public.agent_chat_processed
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_processed_stamp();

-- 2 -----------------------------------------------------------------------------------------

ALTER TABLE public.agent_chat_processed DROP CONSTRAINT agent_chat_processed_status_check;
ALTER TABLE public.agent_chat_processed ADD CONSTRAINT agent_chat_processed_status_check
    CHECK (status IN ('received', 'routed', 'responded', 'failed', 'expired', 'skipped'));

COMMENT ON TABLE public.agent_chat_processed IS
    'Which agent has handled which message, and how: the exactly-once delivery record.'
    ' status: routed (handled, no reply), responded (replied), failed (error_message says why),'
    ' expired (its time to live ran out first), skipped; received while being handled.'
    ' Never replicated: each database keeps the marks of the agents that listen on it.';

-- 3 -----------------------------------------------------------------------------------------

ALTER TABLE public.agent_chat ADD COLUMN expires_at timestamptz;
COMMENT ON COLUMN public.agent_chat.expires_at IS
    'Optional time to live: after it the message is not handed to agents (recorded expired) and'
    ' NOVA''s expire_old_chat deletes it. NULL: never expires.';
CREATE INDEX agent_chat_expires_at_idx ON public.agent_chat (expires_at)
    WHERE expires_at IS NOT NULL;

-- 4 -----------------------------------------------------------------------------------------

ALTER FUNCTION public.agent_chat_enqueue_embedding() SECURITY DEFINER;
