-- Named queries. Each block starts with "-- name: NAME" and a line saying what it is for.
-- Loaded once by agentchat.sql.queries; Python refers to them by name. A block with
-- {placeholders} runs through queries.compose(name, placeholder=...), each filled with
-- psycopg.sql.Identifier (names) or psycopg.sql.Literal (values).

-- name: trigger_status
-- The seed's "Check Trigger Status" query with the real catalog columns (nspname, relname, tgname).
SELECT n.nspname AS schemaname,
       c.relname AS tablename,
       t.tgname  AS triggername,
       CASE t.tgenabled
           WHEN 'O' THEN 'ORIGIN'
           WHEN 'D' THEN 'DISABLED'
           WHEN 'R' THEN 'REPLICA'
           WHEN 'A' THEN 'ALWAYS'
           ELSE 'UNKNOWN'
       END AS trigger_mode
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON t.tgrelid = c.oid
JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid
WHERE n.nspname = 'public'
  AND c.relname = 'agent_chat'
  AND NOT t.tgisinternal
ORDER BY t.tgname;

-- name: node_kind
-- Facts for the node's kind (plain, source, subscriber, peer), from the catalogs: does a
-- subscription carry agent_chat here, does a publication include it (pg_publication_tables also
-- covers FOR ALL TABLES), does one publish it through a row filter (a two-way link)?
SELECT
    EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel sr
            WHERE sr.srrelid = to_regclass('public.agent_chat')) AS is_subscriber,
    EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
            WHERE pt.schemaname = 'public' AND pt.tablename = 'agent_chat') AS is_source,
    (SELECT pg_catalog.array_agg(s.subname ORDER BY s.subname)
       FROM pg_catalog.pg_subscription s
      WHERE s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                          WHERE datname = pg_catalog.current_database())
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel sr
                     WHERE sr.srsubid = s.oid
                       AND sr.srrelid = to_regclass('public.agent_chat'))) AS subscriptions,
    (SELECT pg_catalog.array_agg(DISTINCT pt.pubname ORDER BY pt.pubname)
       FROM pg_catalog.pg_publication_tables pt
      WHERE pt.schemaname = 'public' AND pt.tablename = 'agent_chat') AS publications,
    EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
            WHERE pt.schemaname = 'public' AND pt.tablename = 'agent_chat'
              AND pt.rowfilter IS NOT NULL) AS is_peer;

-- name: server_facts
-- What the installer reports about the server: version, wal_level, pgvector availability.
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       pg_catalog.current_setting('wal_level') AS wal_level,
       EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions
               WHERE name = 'vector') AS vector_available;

-- name: migrations_table
-- The record of applied migrations (created under the migration lock).
CREATE TABLE IF NOT EXISTS public.agentchat_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_applied
-- Applied migrations, if the table exists (NULL regclass means nothing was ever applied).
SELECT version, name, checksum FROM public.agentchat_migrations ORDER BY version;

-- name: migrations_table_exists
-- Whether this database has ever been migrated.
SELECT to_regclass('public.agentchat_migrations') IS NOT NULL;

-- name: migration_lock
-- Serialises concurrent installers; released at the end of each migration's transaction.
SELECT pg_catalog.pg_advisory_xact_lock(7308604117094102616);

-- name: set_embedding_dimension
-- The migration reads the dimension from this transaction-local setting.
SELECT pg_catalog.set_config('agentchat.embedding_dimension', %s, true);

-- name: record_migration
-- Marks one migration applied, in its own transaction.
INSERT INTO public.agentchat_migrations (version, name, checksum) VALUES (%s, %s, %s);

-- name: embedding_dimension
-- The dimension fixed at install: the typmod of memory_embeddings.embedding.
SELECT a.atttypmod
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = to_regclass('public.memory_embeddings')
  AND a.attname = 'embedding' AND NOT a.attisdropped;


-- name: setting_get
-- One per-database setting (agentchat_settings, schema version 2 and later).
SELECT value FROM public.agentchat_settings WHERE key = %s;

-- name: setting_put
-- Set one per-database setting.
INSERT INTO public.agentchat_settings (key, value) VALUES (%s, %s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: setting_delete
-- Remove one per-database setting.
DELETE FROM public.agentchat_settings WHERE key = %s;

-- name: subscription_conninfo
-- A subscription's connection string (pg_subscription.subconninfo: superusers only).
SELECT s.subconninfo FROM pg_catalog.pg_subscription s
WHERE s.subname = %s
  AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database());

-- name: allow_maintenance
-- Lets this transaction delete messages (prune, verify's probe): agent_chat is otherwise
-- immutable (schema version 5's trigger trg_immutable_agent_chat). Run it inside the transaction.
SELECT pg_catalog.set_config('agentchat.maintenance', 'on', true);

-- name: create_database
-- The installer's new database (through a maintenance database).
CREATE DATABASE {database};

-- name: drop_database
-- A database the installer (or replicate add) created, dropped again after a later step failed.
DROP DATABASE IF EXISTS {database};

-- name: trigger_mode_origin
-- Set an agent_chat trigger to ORIGIN: it fires for local writes only.
ALTER TABLE public.agent_chat ENABLE TRIGGER {trigger};

-- name: trigger_mode_always
-- Set an agent_chat trigger to ALWAYS: it fires for local and replicated rows.
ALTER TABLE public.agent_chat ENABLE ALWAYS TRIGGER {trigger};

-- name: trigger_mode_replica
-- Set an agent_chat trigger to REPLICA: it fires for replicated rows only.
ALTER TABLE public.agent_chat ENABLE REPLICA TRIGGER {trigger};

-- name: trigger_mode_disabled
-- Set an agent_chat trigger to DISABLED: it never fires.
ALTER TABLE public.agent_chat DISABLE TRIGGER {trigger};

-- name: backfill_migration_checksum
-- Record the shipped checksum of an applied migration that was recorded without one.
UPDATE public.agentchat_migrations SET checksum = %s
WHERE version = %s AND coalesce(checksum, '') = '';
