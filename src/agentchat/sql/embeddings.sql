-- The embedding queue and semantic search. Loaded by agentchat.sql.queries; used by
-- agentchat.embeddings.worker and agentchat.embeddings.search.

-- name: embed_claim
-- Claim a batch of queued rows (embedding NULL, due now) for this worker's transaction. SKIP
-- LOCKED: rows another worker holds are passed over, never waited for, never done twice; a
-- worker that dies releases its rows with its transaction. On a replica, the chat's rows arrive
-- by replication with the source's embedding to come, so they are left alone unless the
-- replica embeds replicated rows itself (agentchat install --embed-replicated).
-- %(due_by)s: a --once run passes its start, so a row that failed during the run waits for the
-- next run; a running worker passes NULL (due by now). On a two-way node, %(node)s: only the
-- chat rows written here (the node number in the message id), and legacy ids (below 2^52) only
-- where %(legacy)s (a node without a parent); the others arrive with their vector.
SELECT id, content
  FROM public.memory_embeddings
 WHERE embedding IS NULL
   AND (next_attempt_at IS NULL
        OR next_attempt_at <= coalesce(%(due_by)s::timestamptz, pg_catalog.now()))
   AND (source_type <> 'agent_chat'
        OR (%(chat_rows)s
            AND (%(node)s::int IS NULL
                 OR (source_id < 4503599627370496 AND %(legacy)s)
                 OR (source_id >= 4503599627370496
                     AND ((source_id >> 12) & 1023) = %(node)s::int))))
 ORDER BY id
 LIMIT %(batch)s
   FOR UPDATE SKIP LOCKED;

-- name: embed_store
-- Write a batch's vectors, in the claim's transaction: %(vectors)b is a vector[] sent in
-- pgvector's binary format (no decimal text to format or parse), parallel to %(ids)s.
UPDATE public.memory_embeddings AS e
   SET embedding = v.embedding, model = %(model)s, updated_at = pg_catalog.now(),
       last_error = NULL, next_attempt_at = NULL
  FROM ROWS FROM (pg_catalog.unnest(%(ids)s::bigint[]),
                  pg_catalog.unnest(%(vectors)b::public.vector[]))
       AS v (id, embedding)
 WHERE e.id = v.id;

-- name: embed_clock
-- The database's now(): where a --once run starts (rows due by then are its work).
SELECT pg_catalog.now();

-- name: embed_failed
-- Record a failure on rows: one more attempt, the error, and when to try again (exponential
-- backoff from %(base)s seconds, at least 1 s, at most %(cap)s seconds).
UPDATE public.memory_embeddings
   SET attempts = attempts + 1, last_error = %(error)s, updated_at = pg_catalog.now(),
       next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(
           secs => least(%(cap)s::float8,
                         greatest(1.0, %(base)s::float8 * 2 ^ least(attempts, 30))))
 WHERE id = ANY(%(ids)s::bigint[]);

-- name: embed_backlog
-- The queue as this worker sees it: rows due now, rows waiting for a retry, rows that failed.
SELECT count(*) FILTER (WHERE next_attempt_at IS NULL OR next_attempt_at <= pg_catalog.now()),
       count(*) FILTER (WHERE next_attempt_at > pg_catalog.now()),
       count(*) FILTER (WHERE attempts > 0)
  FROM public.memory_embeddings
 WHERE embedding IS NULL
   AND (source_type <> 'agent_chat'
        OR (%(chat_rows)s
            AND (%(node)s::int IS NULL
                 OR (source_id < 4503599627370496 AND %(legacy)s)
                 OR (source_id >= 4503599627370496
                     AND ((source_id >> 12) & 1023) = %(node)s::int))));

-- name: embed_listen
-- Wake-ups for the worker: the embed trigger's channel.
LISTEN memory_embeddings;

-- name: embed_listen_chat
-- On a replica that embeds replicated rows: replicated queue rows send no NOTIFY (no trigger on
-- memory_embeddings), but the chat's notify trigger fires for the message they come with.
LISTEN agent_chat;

-- name: embedding_facts
-- What status reports about a database's embeddings: rows, queued, failing, models.
SELECT count(*) FILTER (WHERE embedding IS NOT NULL),
       count(*) FILTER (WHERE embedding IS NULL),
       count(*) FILTER (WHERE embedding IS NULL AND attempts > 0),
       coalesce(pg_catalog.array_agg(DISTINCT model) FILTER (WHERE model IS NOT NULL), '{}')
  FROM public.memory_embeddings;

-- name: search_messages
-- The chat's messages nearest to a query vector by cosine distance, through the HNSW index
-- (ORDER BY the distance operator, LIMIT); score = cosine similarity. %(query)b: the query
-- vector in pgvector's binary format. The caller sets hnsw.iterative_scan so a channel filter
-- still yields LIMIT rows.
SELECT c.id, c.channel, c.sender, c.mentions, c.reply_to, c.created_at, c.message,
       1 - (e.embedding OPERATOR(public.<=>) %(query)b::public.vector) AS score
  FROM public.memory_embeddings e
  JOIN public.agent_chat c ON c.id = e.source_id
 WHERE e.source_type = 'agent_chat'
   AND e.embedding IS NOT NULL
   AND (%(channel)s::text IS NULL OR c.channel = %(channel)s::text)
 ORDER BY e.embedding OPERATOR(public.<=>) %(query)b::public.vector
 LIMIT %(limit)s;

-- name: search_settings
-- Per-transaction settings for search: keep scanning the HNSW index past filtered-out rows;
-- ef_search, the candidates the scan keeps (recall against speed); and a plan made for this
-- query's values: once psycopg prepares the statement (its fifth run on a connection), a generic
-- plan, made without knowing whether a channel is given, can sort every row by distance
-- instead of walking the index (measured over 2,000 rows: 17.6 ms instead of 5.6 ms).
SELECT pg_catalog.set_config('hnsw.iterative_scan', 'strict_order', true),
       pg_catalog.set_config('hnsw.ef_search', %(ef_search)s, true),
       pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true);

-- Benchmarks (agentchat.bench.embeddings, agentchat.bench.search) -------------------------

-- name: bench_embed_queue
-- Queue one message (sender, text) as agents send them: its memory_embeddings row comes with it.
SELECT public.send_agent_message(%s, %s, '{*}');

-- name: bench_embed_queued
-- The queued texts in the order the worker claims them (its batches are these, 32 at a time).
SELECT content FROM public.memory_embeddings WHERE embedding IS NULL ORDER BY id;

-- name: bench_embed_reset
-- Queue every row again for the next round.
UPDATE public.memory_embeddings
   SET embedding = NULL, model = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL;

-- name: bench_vacuum
-- Between rounds and after a load: dead tuples and index entries gone, statistics fresh.
VACUUM (ANALYZE) public.memory_embeddings;

-- name: bench_embed_stored
-- The first stored vectors with their texts (compared with the raw model's).
SELECT content, embedding FROM public.memory_embeddings
 WHERE embedding IS NOT NULL ORDER BY id LIMIT %s;

-- name: bench_search_messages
-- That many chat messages in one statement (the embed trigger queues a row for each).
INSERT INTO public.agent_chat (sender, message, mentions)
SELECT 'nova', 'note ' || g, '{*}' FROM pg_catalog.generate_series(1, %s) AS g;

-- name: bench_search_queue_ids
-- The queue rows' ids, in order (the loaded vectors go to them in this order).
SELECT id FROM public.memory_embeddings WHERE embedding IS NULL ORDER BY id;

-- name: bench_search_index_options
-- The HNSW index's build parameters as installed (NULL: pgvector's defaults, m 16 and
-- ef_construction 64).
SELECT c.reloptions FROM pg_catalog.pg_class c
 WHERE c.oid = 'public.memory_embeddings_embedding_idx'::pg_catalog.regclass;

-- name: bench_search_drop_index
-- Before a bulk load: built once at the end, instead of 100,000 inserts into the graph.
DROP INDEX public.memory_embeddings_embedding_idx;

-- name: bench_search_vectors_table
-- The search benchmark's synthetic vectors, staged in this session before they are stored.
CREATE TEMPORARY TABLE bench_vectors (id bigint PRIMARY KEY, embedding public.vector);

-- name: bench_search_copy_vectors
-- The vectors, streamed in pgvector's binary format.
COPY bench_vectors (id, embedding) FROM STDIN (FORMAT BINARY);

-- name: bench_search_store_vectors
-- Each queued row gets its synthetic vector, as the worker would store a real one.
UPDATE public.memory_embeddings AS e
   SET embedding = v.embedding, model = 'bench-synthetic'
  FROM bench_vectors AS v
 WHERE e.id = v.id;

-- name: bench_search_build_settings
-- Room for the graph in memory while the index builds (the build is much slower once it
-- spills), in this session only.
SELECT pg_catalog.set_config('maintenance_work_mem', '512MB', false);

-- name: bench_search_create_index
-- The product's index (migration 0001), with its build parameters given.
CREATE INDEX memory_embeddings_embedding_idx
    ON public.memory_embeddings USING hnsw (embedding public.vector_cosine_ops)
  WITH (m = {m}, ef_construction = {ef_construction});

-- name: bench_search_exact
-- An exact scan for the same query: no index scans in this transaction, so every vector is
-- compared (the ground truth of recall, and the speed without the index).
SELECT pg_catalog.set_config('enable_indexscan', 'off', true);
