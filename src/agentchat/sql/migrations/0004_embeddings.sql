-- agentchat schema, version 4: the embedding queue's bookkeeping.
--
-- A row of memory_embeddings with embedding NULL is queued. A worker that fails to embed it
-- records why and when to try again, and the rest of the queue goes on:
--   attempts         failed attempts so far (0: never failed)
--   last_error       the last failure, one line
--   next_attempt_at  not before this moment (NULL: now)
-- These columns are not in the publication's column list: each database keeps its own queue
-- bookkeeping, and the chat's embeddings reach replicas with the values computed at the source.
ALTER TABLE public.memory_embeddings
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 0,
    ADD COLUMN last_error      text,
    ADD COLUMN next_attempt_at timestamptz;
