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

-- name: agent_claim_batch
-- Claim a batch of an agent's waiting messages inside the batch's transaction, and read them:
-- the messages addressed to it (its name or '*' in mentions, not its own, on its channel if it
-- has one) that it has no mark for, oldest first. The anti-join, not a high-water mark: a
-- message whose transaction committed late (or replicated late) with a lower id is still found
-- (after: 0 from the beginning; a backlog's next batch starts past the last one's highest id,
-- and the run ends with one more from the beginning).
-- Two listeners of one agent split the work: each takes a transaction advisory lock on
-- (agent, message) with pg_try_advisory_xact_lock and skips what another holds, instead of
-- waiting for it (the candidates are materialised in id order and locked lazily under the
-- LIMIT, so a claim locks what it takes and nothing more). The anti-join's own bound on
-- p.chat_id is implied but not derived by the planner: without it, a merge anti-join read all
-- of the agent's marks for each batch of a backlog (25 ms a batch at 50,000 marks; 0.6 ms with
-- it: catch-up went quadratic). The insert of the mark is the
-- guarantee: ON CONFLICT sees marks committed after this statement's snapshot, so a message
-- another listener recorded in between is not taken twice. The mark says 'routed', the outcome
-- of a message handled without a reply, at once (agent_finish changes the others at the end of
-- the batch; nobody sees a mark before the batch commits). Each locked message gives a row:
-- status 'routed' (handed over: the message's columns follow), 'expired' (its time to live
-- ran out: recorded expired, not handed over) or NULL (recorded meanwhile by someone else).
WITH candidates AS MATERIALIZED (
    SELECT c.id, c.expires_at IS NOT NULL AND c.expires_at <= now() AS expired
      FROM public.agent_chat c
     WHERE c.id > %(after)s
       AND c.mentions && ARRAY[%(agent)s::text, '*']
       AND c.sender <> %(agent)s
       AND (%(channel)s::text IS NULL OR c.channel = %(channel)s::text)
       AND NOT EXISTS (SELECT 1 FROM public.agent_chat_processed p
                        WHERE p.chat_id = c.id AND p.agent = %(agent)s
                          AND p.chat_id > %(after)s)
     ORDER BY c.id
     LIMIT %(scan)s
), locked AS MATERIALIZED (
    SELECT id, expired
      FROM candidates
     WHERE pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext(%(agent)s),
                                                (id %% 4294967296 - 2147483648)::integer)
     LIMIT %(limit)s
), claimed AS (
    INSERT INTO public.agent_chat_processed (chat_id, agent, status)
    SELECT id, %(agent)s, CASE WHEN expired THEN 'expired' ELSE 'routed' END
      FROM locked
    ON CONFLICT (chat_id, agent) DO NOTHING
    RETURNING chat_id, status
)
SELECT l.id, k.status, c.channel, c.sender, c.mentions, c.reply_to, c.created_at, c.message
  FROM locked l
  LEFT JOIN claimed k ON k.chat_id = l.id
  LEFT JOIN public.agent_chat c ON c.id = l.id AND k.status = 'routed'
 ORDER BY l.id;

-- name: agent_claim_ids
-- agent_claim_batch for the ids notifications named: each is checked here (addressed to the
-- agent, not marked yet), not trusted; a forged id claims nothing. The anti-join names the ids
-- on the marks' side too: the generic plan psycopg's prepared statement gets otherwise read all
-- of the agent's marks for each claim (a join filter, not an index condition), so each
-- delivery cost more as the agent's history grew.
WITH candidates AS MATERIALIZED (
    SELECT c.id, c.expires_at IS NOT NULL AND c.expires_at <= now() AS expired
      FROM public.agent_chat c
     WHERE c.id = ANY(%(ids)s::bigint[])
       AND c.mentions && ARRAY[%(agent)s::text, '*']
       AND c.sender <> %(agent)s
       AND (%(channel)s::text IS NULL OR c.channel = %(channel)s::text)
       AND NOT EXISTS (SELECT 1 FROM public.agent_chat_processed p
                        WHERE p.chat_id = c.id AND p.agent = %(agent)s
                          AND p.chat_id = ANY(%(ids)s::bigint[]))
     ORDER BY c.id
), locked AS MATERIALIZED (
    SELECT id, expired
      FROM candidates
     WHERE pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext(%(agent)s),
                                                (id %% 4294967296 - 2147483648)::integer)
     LIMIT %(limit)s
), claimed AS (
    INSERT INTO public.agent_chat_processed (chat_id, agent, status)
    SELECT id, %(agent)s, CASE WHEN expired THEN 'expired' ELSE 'routed' END
      FROM locked
    ON CONFLICT (chat_id, agent) DO NOTHING
    RETURNING chat_id, status
)
SELECT l.id, k.status, c.channel, c.sender, c.mentions, c.reply_to, c.created_at, c.message
  FROM locked l
  LEFT JOIN claimed k ON k.chat_id = l.id
  LEFT JOIN public.agent_chat c ON c.id = l.id AND k.status = 'routed'
 ORDER BY l.id;

-- name: agent_finish
-- Record the outcomes of a batch's messages that were not simply routed (arrays of ids,
-- statuses and errors), in the transaction that claimed them: responded or failed, stamped by
-- trg_stamp_agent_chat_processed (routed_at cleared: the claim's 'routed' was provisional).
UPDATE public.agent_chat_processed p
   SET status = o.status, error_message = o.error, routed_at = NULL, updated_at = now()
  FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(errors)s::text[])
       AS o(id, status, error)
 WHERE p.chat_id = o.id AND p.agent = %(agent)s;

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

-- name: fresh_statistics
-- When an agent connects: analyse the chat and the marks if they changed by more than half since
-- they were last analysed (rows replicated while the agent was offline), so a backlog's claims
-- get the plan they need; returns the tables analysed (schema 9, never waits on a lock).
SELECT public.agentchat_fresh_statistics();

-- name: listen
-- Wake-ups for an agent's listener: the notify trigger's channel.
LISTEN agent_chat;

-- name: ping
-- Proves a quiet connection is still alive.
SELECT 1;
