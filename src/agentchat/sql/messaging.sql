-- Agents' queries: sending, finding and claiming an agent's messages, recording outcomes, pruning.
-- Loaded by agentchat.sql.queries; used by agentchat.agents (send, agent, aio).

-- name: send_message
-- Post a message through the validating function; returns the new id.
SELECT public.send_agent_message(%(sender)s, %(message)s, %(mentions)s::text[], %(channel)s,
                                 %(reply_to)s::bigint);

-- name: send_reply
-- Post a delivery's reply, idempotently: the same reply_key again returns the first post's id.
SELECT public.send_agent_reply(%(sender)s, %(message)s, %(mentions)s::text[], %(channel)s,
                               %(reply_to)s::bigint, %(reply_key)s);

-- name: agent_pending
-- Ids of the messages addressed to an agent (its name or '*' in mentions, not its own) that it
-- has no mark for, oldest first. The anti-join, not a high-water mark: a message whose
-- transaction committed late (or replicated late) with a lower id is still found.
SELECT c.id
  FROM public.agent_chat c
 WHERE c.mentions && ARRAY[%(agent)s::text, '*']
   AND c.sender <> %(agent)s
   AND (%(channel)s::text IS NULL OR c.channel = %(channel)s::text)
   AND NOT EXISTS (SELECT 1 FROM public.agent_chat_processed p
                    WHERE p.chat_id = c.id AND p.agent = %(agent)s)
 ORDER BY c.id
 LIMIT %(limit)s;

-- name: agent_claim
-- Claim one message for an agent inside the delivery's transaction and read it, if it is
-- addressed to the agent (its name or '*', not its own, on its channel if it has one): an id
-- from a notification is checked here, not trusted. The mark's insert holds the
-- (chat_id, agent) key until commit: a second listener of the same agent waits here, then
-- finds the mark and gets no row. Nothing returned: not for this agent, or handled already,
-- or expired (its time to live ran out: the mark says expired, and it is not handed over).
WITH target AS (
    SELECT c.id, c.expires_at IS NOT NULL AND c.expires_at <= now() AS expired
      FROM public.agent_chat c
     WHERE c.id = %(id)s
       AND c.mentions && ARRAY[%(agent)s::text, '*']
       AND c.sender <> %(agent)s
       AND (%(channel)s::text IS NULL OR c.channel = %(channel)s::text)
), claimed AS (
    INSERT INTO public.agent_chat_processed (chat_id, agent, status)
    SELECT target.id, %(agent)s, CASE WHEN target.expired THEN 'expired' ELSE 'received' END
      FROM target
    ON CONFLICT (chat_id, agent) DO NOTHING
    RETURNING chat_id, status
)
SELECT c.id, c.channel, c.sender, c.mentions, c.reply_to, c.created_at, c.message
  FROM public.agent_chat c JOIN claimed ON claimed.chat_id = c.id
 WHERE claimed.status = 'received';

-- name: agent_finish
-- Record a delivery's outcome, in the same transaction as its claim.
UPDATE public.agent_chat_processed
   SET status = %(status)s, error_message = %(error)s, updated_at = now()
 WHERE chat_id = %(id)s AND agent = %(agent)s;

-- name: prune_cutoff
-- The moment before which messages are old, by the server's clock.
SELECT now() - %(older_than)s::interval;

-- name: prune_count
-- How many messages a prune would delete.
SELECT count(*) FROM public.agent_chat WHERE created_at < %(cutoff)s;

-- name: prune_batch
-- Delete one batch of old messages (their marks and embedding rows go with them by trigger).
WITH doomed AS (
    SELECT id FROM public.agent_chat WHERE created_at < %(cutoff)s ORDER BY id LIMIT %(batch)s
)
DELETE FROM public.agent_chat c USING doomed WHERE c.id = doomed.id;

-- name: listen
-- Wake-ups for an agent's listener: the notify trigger's channel.
LISTEN agent_chat;

-- name: ping
-- Proves a quiet connection is still alive.
SELECT 1;
