-- Row-level security: a second wall behind the tenant predicates of the gateway's queries.
--
-- The gateway reads as the role albatross_reader: SELECT only, not the owner, no BYPASSRLS.
-- Every tenant-scoped table has RLS enabled and forced, with one SELECT policy for everyone
-- (PUBLIC): a row is visible only when the statement declared its tenant, or declared "all
-- tenants" (a PlatformAdmin), through declare_scope() below. A session that declared nothing
-- sees no row. Only the projector writes, as the owner, which must bypass RLS (superuser or
-- BYPASSRLS; checked below): COPY, used by the rebuild, refuses tables whose policies apply.
-- Names stay unqualified (the runner sets search_path), so a rebuild's shadow schema gets the
-- same grants and policies and keeps them through the rename.

DO $$
BEGIN
    IF NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'the read models'' owner % must bypass row-level security', current_user
            USING HINT = format('as a superuser: ALTER ROLE %I BYPASSRLS', current_user);
    END IF;
    -- Roles are cluster-wide and several databases or schemas may migrate at once.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'albatross_reader') THEN
        BEGIN
            CREATE ROLE albatross_reader NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- The gateway connects as the owner and switches to the reader at connection start.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT albatross_reader TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO albatross_reader', current_schema());
END
$$;

GRANT SELECT ON tenants, users, api_keys, pireps, pirep_history, projection_checkpoint
    TO albatross_reader;
-- change_outbox and poison_events: no grant at all, the gateway never reads them.

-- The scope of ONE statement: transaction-local settings, gone when the statement's implicit
-- transaction ends, so nothing is left on a pooled connection. The gateway calls it as the
-- first FROM item of each query, with the scan in a LATERAL subquery that depends on its
-- result, so the scan (and the policies in it) runs after the declaration. PARALLEL UNSAFE
-- keeps such statements off parallel workers, which would not see a setting made mid-query.
CREATE FUNCTION declare_scope(tenant_id text, all_tenants boolean) RETURNS boolean
    LANGUAGE sql VOLATILE PARALLEL UNSAFE AS $$
    SELECT set_config('albatross.tenant_id', coalesce(tenant_id, ''), true) IS NOT NULL
       AND set_config('albatross.all_tenants', CASE WHEN all_tenants THEN 'on' ELSE 'off' END,
                      true) IS NOT NULL
$$;
REVOKE ALL ON FUNCTION declare_scope(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION declare_scope(text, boolean) TO albatross_reader;

-- policy.py: a PlatformAdmin sees every tenant; anyone else only rows of their own tenant
-- (a user without a tenant, i.e. a PlatformAdmin's row, only to a PlatformAdmin).
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON tenants FOR SELECT TO PUBLIC USING (
    current_setting('albatross.all_tenants', true) = 'on'
    OR id = current_setting('albatross.tenant_id', true));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON users FOR SELECT TO PUBLIC USING (
    current_setting('albatross.all_tenants', true) = 'on'
    OR tenant_id = current_setting('albatross.tenant_id', true));

ALTER TABLE pireps ENABLE ROW LEVEL SECURITY;
ALTER TABLE pireps FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON pireps FOR SELECT TO PUBLIC USING (
    current_setting('albatross.all_tenants', true) = 'on'
    OR tenant_id = current_setting('albatross.tenant_id', true));

-- No tenant column: an API key is visible with its owner, a history entry with its PIREP.
-- The subqueries read through the owner's own policy (RLS applies inside policies too).
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON api_keys FOR SELECT TO PUBLIC USING (
    EXISTS (SELECT 1 FROM users u WHERE u.id = api_keys.user_id));

ALTER TABLE pirep_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE pirep_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON pirep_history FOR SELECT TO PUBLIC USING (
    EXISTS (SELECT 1 FROM pireps p WHERE p.id = pirep_history.pirep_id));
