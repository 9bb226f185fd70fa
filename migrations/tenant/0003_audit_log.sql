-- The tenant's own audit log: in its placement, so it is exported and moved with the tenant.
-- Append-only for the app (INSERT and SELECT only; a trigger refuses UPDATE, DELETE and TRUNCATE
-- to everyone but a platform data tool that says so), under RLS like every tenant table, and
-- tamper-evident: a trigger numbers each entry and chains it to the previous one (SHA-256 of the
-- previous hash and a canonical form of the entry), one tenant at a time, under a row lock on the
-- tenant's chain head, so concurrent writers leave a gapless, valid chain.

CREATE TABLE audit_log (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  id              uuid NOT NULL,
  seq             bigint NOT NULL,
  actor_kind      text NOT NULL CHECK (actor_kind IN ('user', 'support', 'system', 'identity_provider')),
  actor_id        text,
  action          text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
  target_type     text,
  target_id       text,
  metadata        jsonb NOT NULL DEFAULT '{}',
  request_id      text,
  ip              text,
  user_agent      text CHECK (length(user_agent) <= 500),
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  prev_hash       bytea NOT NULL,
  hash            bytea NOT NULL,
  PRIMARY KEY (organization_id, id),
  CONSTRAINT audit_log_seq_key UNIQUE (organization_id, seq)
);
CREATE INDEX audit_log_created_idx ON audit_log (organization_id, created_at DESC, seq DESC);

-- Each tenant's chain head: maintained by the trigger only (the app has no privilege on it).
CREATE TABLE audit_chain_heads (
  organization_id uuid PRIMARY KEY DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  seq             bigint NOT NULL,
  hash            bytea NOT NULL
);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);

-- What an entry's hash covers: every field but the hashes, as a JSON array (jsonb renders the
-- metadata with sorted keys), the time in UTC with microseconds: independent of any setting.
CREATE FUNCTION audit_canonical(a audit_log) RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT convert_to(json_build_array(
    a.seq, a.id, a.organization_id, a.actor_kind, a.actor_id, a.action, a.target_type, a.target_id,
    a.metadata, a.request_id, a.ip, a.user_agent,
    to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text, 'UTF8')
$$;

-- Platform data tools (moves, purges) run as the owner of the tables with app.audit_maintenance
-- set to 'on' in their transaction: rows they insert keep the seq and hashes they carry (a copy
-- of an existing chain), and rows may be removed. The setting counts only for a login role that
-- is (a member of) the owner: the app's role is not (start-up refuses it otherwise), so the app
-- can never use it, even with the setting.
CREATE FUNCTION audit_maintenance(rel regclass) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT coalesce(current_setting('app.audit_maintenance', true), '') = 'on'
     AND pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = rel), 'USAGE')
$$;

ALTER TABLE audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
-- The platform's checkpointer reads every tenant's head (a sequence number and a hash, no tenant
-- data) in maintenance mode; anything else sees its own tenant's only.
CREATE POLICY tenant_isolation ON audit_chain_heads
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid OR audit_maintenance('audit_chain_heads'))
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid OR audit_maintenance('audit_chain_heads'));

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  head_seq bigint;
  head_hash bytea;
BEGIN
  INSERT INTO audit_chain_heads (organization_id, seq, hash) VALUES (NEW.organization_id, 0, '\x') ON CONFLICT (organization_id) DO NOTHING;
  SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_heads WHERE organization_id = NEW.organization_id FOR UPDATE;
  IF NEW.hash IS NOT NULL AND audit_maintenance(TG_RELID) THEN
    -- A copy of an existing chain (a move): kept as it is; the head follows the greatest entry.
    IF NEW.seq > head_seq THEN
      UPDATE audit_chain_heads SET seq = NEW.seq, hash = NEW.hash WHERE organization_id = NEW.organization_id;
    END IF;
    RETURN NEW;
  END IF;
  NEW.seq := head_seq + 1;
  NEW.created_at := clock_timestamp();
  NEW.prev_hash := head_hash;
  NEW.hash := sha256(head_hash || audit_canonical(NEW));
  UPDATE audit_chain_heads SET seq = NEW.seq, hash = NEW.hash WHERE organization_id = NEW.organization_id;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  IF audit_maintenance(TG_RELID) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
