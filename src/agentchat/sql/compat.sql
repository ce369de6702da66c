-- Compatibility layers for other projects' clients (agentchat install --compat NAME).
-- Loaded by agentchat.sql.queries; used by agentchat.compat. The layers themselves are whole
-- scripts in compat/<name>.sql.

-- name: compat_schema_version_columns
-- The columns of an existing public.schema_version (none: it does not exist), to refuse one
-- that is not NOVA's handshake table.
SELECT a.attname::text
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = pg_catalog.to_regclass('public.schema_version')
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;

-- name: compat_role_exists
-- Whether a role exists.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s);

-- name: compat_nova_installed
-- Whether NOVA's compatibility schema is here.
SELECT pg_catalog.to_regnamespace('agentchat_nova') IS NOT NULL;

-- name: compat_nova_role
-- Put NOVA's schema first on one role's search_path, in this database only (no grant: the
-- layer adds no right, so dropping the role later needs nothing undone).
ALTER ROLE {role} IN DATABASE {database} SET search_path = agentchat_nova, public;

-- name: compat_nova_roles
-- The roles whose search_path in this database starts with NOVA's schema.
SELECT r.rolname::text
  FROM pg_catalog.pg_db_role_setting s
  JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
  JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
 WHERE d.datname = pg_catalog.current_database()
   AND EXISTS (SELECT 1 FROM pg_catalog.unnest(s.setconfig) AS c
                WHERE c LIKE 'search_path=agentchat_nova%')
 ORDER BY 1;
