-- agentchat schema, version 6: message ids that carry the node they were written on (issue 13;
-- docs/design/two-way.md, docs/schema.md "Message ids").
--
-- 1. Every database gets a node number, 1 to 1023: agentchat_settings key 'node' (local, never
--    replicated), a random one when it has none. agentchat install keeps it; replicate add and
--    mesh give a joining node a free one from the registry (4).
-- 2. public.agentchat_next_id() makes a new message id, laid out like a Snowflake id:
--        bit 63 (0) | ms since 2020-01-01 UTC (41 bits) | node (10 bits) | sequence (12 bits)
--    from clock_timestamp(), the node number and public.agentchat_id_seq modulo 4096 (exactly
--    agentchat.replication.links.make_id). No other database is asked.
-- 3. agent_chat.id loses its identity and takes agentchat_next_id() as its default. Rows already
--    there keep their ids (from the identity sequence, far below 2^52: legacy rows, node 0), and
--    new ids (near 2^59) sort after all of them, so no replica's copy of history changes. Any
--    INSERT that leaves id out (send_agent_message, the seed's plain INSERT) gets a new-style id;
--    replicated rows arrive with theirs. memory_embeddings.id stays a local identity.
-- 4. public.agentchat_nodes: the registry of nodes, one row per node, written on that node only
--    (its own row) and replicated through the two-way links.
--
-- Both functions are SECURITY DEFINER: a writer that may INSERT into agent_chat gets an id
-- without privileges on the sequence or the settings, as it did with the identity column.

-- 1 -----------------------------------------------------------------------------------------

INSERT INTO public.agentchat_settings (key, value)
VALUES ('node', (1 + pg_catalog.floor(pg_catalog.random() * 1023))::integer::text)
ON CONFLICT (key) DO NOTHING;

CREATE FUNCTION public.agentchat_node() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.value::integer FROM public.agentchat_settings s WHERE s.key = 'node'
$$;
COMMENT ON FUNCTION public.agentchat_node() IS
    'This database''s node number (agentchat_settings key node, 1 to 1023); NULL when unset.';

-- 2 -----------------------------------------------------------------------------------------

CREATE SEQUENCE public.agentchat_id_seq AS bigint;
COMMENT ON SEQUENCE public.agentchat_id_seq IS
    'The low 12 bits of agentchat_next_id() (taken modulo 4096).';

CREATE FUNCTION public.agentchat_next_id() RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    node  integer := public.agentchat_node();
    since bigint := pg_catalog.floor(
        EXTRACT(epoch FROM pg_catalog.clock_timestamp()) * 1000)::bigint - 1577836800000;
BEGIN
    IF node IS NULL THEN
        RAISE EXCEPTION 'database "%" has no agentchat node number', pg_catalog.current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'new agent_chat ids carry the node number (agentchat_settings key node)',
                  HINT = 'agentchat install sets it: run agentchat install on this database';
    END IF;
    IF node NOT BETWEEN 1 AND 1023 THEN
        RAISE EXCEPTION 'the agentchat node number of database "%" is %, not 1 to 1023',
            pg_catalog.current_database(), node
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'set a free number with agentchat.nodes.set_number';
    END IF;
    IF since NOT BETWEEN 1073741824 AND 2199023255551 THEN  -- 2^30 .. 2^41 - 1 ms
        RAISE EXCEPTION 'the clock of database "%" says %, outside the years of agentchat ids'
            ' (2020-01-13 to 2089)', pg_catalog.current_database(), pg_catalog.clock_timestamp()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'set the server''s clock right';
    END IF;
    RETURN (since << 22) | (node::bigint << 12)
         | (pg_catalog.nextval('public.agentchat_id_seq'::regclass) % 4096);
END
$$;
COMMENT ON FUNCTION public.agentchat_next_id() IS
    'A new agent_chat id: ms since 2020-01-01 << 22 | node << 12 | agentchat_id_seq % 4096.';

-- 3 -----------------------------------------------------------------------------------------

ALTER TABLE public.agent_chat ALTER COLUMN id DROP IDENTITY IF EXISTS;
ALTER TABLE public.agent_chat ALTER COLUMN id SET DEFAULT public.agentchat_next_id();

-- 4 -----------------------------------------------------------------------------------------

CREATE TABLE public.agentchat_nodes (
    node      integer     NOT NULL CHECK (node BETWEEN 1 AND 1023),
    name      text        NOT NULL,
    conninfo  text,
    parent    integer,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, name)
);
COMMENT ON TABLE public.agentchat_nodes IS
    'The nodes of a topology, one row each, written on that node only and replicated by the'
    ' two-way links. name: the database as agentchat describes it; conninfo: how the operator'
    ' reaches it, never with a password; parent: its parent''s node number in a tree (NULL for a'
    ' root, a mesh member or a plain database). Two rows with one node number are a collision.';

-- This database's own row, named after the database until agentchat install names it better
-- (agentchat.nodes.register_self). agentchat_settings key node_name remembers which row is its
-- own: rows of other databases arrive here by replication.
INSERT INTO public.agentchat_nodes (node, name)
SELECT public.agentchat_node(), pg_catalog.current_database()
ON CONFLICT DO NOTHING;
INSERT INTO public.agentchat_settings (key, value)
VALUES ('node_name', pg_catalog.current_database())
ON CONFLICT (key) DO NOTHING;
