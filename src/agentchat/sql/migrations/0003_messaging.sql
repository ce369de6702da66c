-- agentchat schema, version 3: what agents' delivery and pruning need.
--
-- Pruning deletes old messages at the source; the deletions replicate. Two things must follow a
-- deleted message on every database:
--
-- 1. Its delivery marks (agent_chat_processed). On the source the foreign key's ON DELETE CASCADE
--    removes them, but a foreign key's actions are internal triggers in ORIGIN mode: they do not
--    fire for deletions the apply worker applies (session_replication_role = replica). On a
--    replica the marks would stay behind. trg_forget_processed fires ALWAYS and removes them.
-- 2. Its embedding row (memory_embeddings, which has no foreign key to the chat).
--    trg_forget_embedding removes it where the deletion happens (ORIGIN); that deletion is
--    published like the chat's, so each replica's copy goes by replication, and the trigger must
--    not fire there too (the replicated delete would find nothing left to delete).

CREATE FUNCTION public.agent_chat_forget_processed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM public.agent_chat_processed p WHERE p.chat_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE FUNCTION public.agent_chat_forget_embedding() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM public.memory_embeddings e
     WHERE e.source_type = 'agent_chat' AND e.source_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_forget_processed
    AFTER DELETE ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_forget_processed();
ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER trg_forget_processed;

CREATE TRIGGER trg_forget_embedding
    AFTER DELETE ON public.agent_chat
    FOR EACH ROW EXECUTE FUNCTION public.agent_chat_forget_embedding();

-- 3. A reply posted by a delivery is idempotent. An agent on a replica posts its replies at the
--    source, outside the delivery's transaction; if the delivery is interrupted (a crash, a lost
--    connection) the message is delivered again and the handler replies again. Each reply of a
--    delivery carries a key, "agent:message id:n" for its n-th reply, unique where set: the
--    second post of the same key returns the first one's id instead of a duplicate. Messages
--    sent any other way have no key (a reply by hand never hides a delivery's reply).
ALTER TABLE public.agent_chat ADD COLUMN reply_key text
    CONSTRAINT agent_chat_reply_key_length CHECK (char_length(reply_key) <= 200);
CREATE UNIQUE INDEX agent_chat_reply_key_idx ON public.agent_chat (reply_key)
    WHERE reply_key IS NOT NULL;

CREATE FUNCTION public.send_agent_reply(
    sender    text,
    message   text,
    mentions  text[],
    channel   text,
    reply_to  bigint,
    reply_key text
) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    existing bigint;
    new_id   bigint;
BEGIN
    IF reply_key IS NULL OR reply_to IS NULL THEN
        RAISE EXCEPTION 'a delivery''s reply needs reply_to and reply_key'
            USING ERRCODE = 'invalid_parameter_value';
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

-- An agent's pending messages are found by an anti-join with its marks; replies by reply_to
-- (agent_chat_reply_to_idx) and pruning by age need no more indexes. Finding the messages an
-- agent has not handled uses the GIN index on mentions and this index on the marks.
COMMENT ON TABLE public.agent_chat_processed IS
    'Which agent has handled which message, and how: the exactly-once delivery record.'
    ' status: routed (handled, no reply), responded (replied), failed (error says why).'
    ' Never replicated: each database keeps the marks of the agents that listen on it.';
