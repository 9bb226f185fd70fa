-- The tenant's own audit log: in its placement, so it is exported and moved with the tenant.
-- Append-only for the app (INSERT and SELECT only; a trigger refuses UPDATE, DELETE and TRUNCATE
-- to everyone but a platform data tool that says so), under RLS like every tenant table, and
-- tamper-evident: entries are sealed into a hash chain (a gapless sequence number, and SHA-256 of
-- the previous hash and a canonical form of the entry) by audit_seal(), one tenant at a time under
-- a row lock on the tenant's chain head. Sealing happens just after the writes commit, not inside
-- them: a chain computed at insert would hold that lock through every writer's COMMIT and
-- serialize all writes of a tenant (measured: 0.41-0.59x of unaudited writes).

CREATE TABLE audit_log (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  id              uuid NOT NULL,
  -- Null until sealed; then 1, 2, 3, ... without gaps.
  seq             bigint,
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
  prev_hash       bytea,
  hash            bytea,
  PRIMARY KEY (organization_id, id),
  CONSTRAINT audit_log_seq_key UNIQUE (organization_id, seq),
  CONSTRAINT audit_log_sealed_check CHECK ((seq IS NULL) = (hash IS NULL) AND (hash IS NULL) = (prev_hash IS NULL))
);
CREATE INDEX audit_log_created_idx ON audit_log (organization_id, created_at DESC, id DESC);
CREATE INDEX audit_log_unsealed_idx ON audit_log (organization_id, created_at, id) WHERE seq IS NULL;

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

-- On insert: an entry from the app arrives unsealed, whatever it says (its time is the
-- database's); a copy made by a platform data tool (a move) keeps its seal, and the tenant's head
-- follows the greatest sealed entry copied.
CREATE FUNCTION audit_log_insert() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  IF audit_maintenance(TG_RELID) THEN
    -- A copy, sealed or not, is kept exactly as it is.
    IF NEW.seq IS NOT NULL THEN
      INSERT INTO audit_chain_heads (organization_id, seq, hash) VALUES (NEW.organization_id, NEW.seq, NEW.hash)
      ON CONFLICT (organization_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash WHERE audit_chain_heads.seq < EXCLUDED.seq;
    END IF;
    RETURN NEW;
  END IF;
  NEW.seq := NULL;
  NEW.prev_hash := NULL;
  NEW.hash := NULL;
  NEW.created_at := clock_timestamp();
  RETURN NEW;
END $$;
-- The app may not write the seal columns or the time at all (column privileges, see
-- grantTenantSchema): its inserts arrive unsealed, and the trigger has nothing to do for them.
CREATE TRIGGER audit_log_insert BEFORE INSERT ON audit_log FOR EACH ROW
  WHEN (NEW.seq IS NOT NULL OR NEW.hash IS NOT NULL OR NEW.prev_hash IS NOT NULL)
  EXECUTE FUNCTION audit_log_insert();

-- Seals a tenant's pending entries (oldest first, at most max_rows) onto its chain; returns how
-- many. Only for the tenant the caller's transaction is confined to (app.current_org_id), or in
-- maintenance; concurrent calls for one tenant queue on the head's row lock. Like every SECURITY
-- DEFINER function here, its search_path names pg_temp last (see libs/postgres/migrator.ts).
CREATE FUNCTION audit_seal(org uuid, max_rows integer DEFAULT 10000) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  head_seq bigint;
  head_hash bytea;
  e audit_log%ROWTYPE;
  sealed integer := 0;
  caller_org text := current_setting('app.current_org_id', true);
BEGIN
  -- Only for the tenant the caller is confined to (or for the platform's own tools).
  IF caller_org IS DISTINCT FROM org::text AND NOT audit_maintenance('audit_log') THEN
    RAISE EXCEPTION 'audit_seal() seals the current tenant''s entries only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('app.current_org_id', org::text, true);
  -- Nothing pending: touch nothing (not even a head row; the tenant may have just been purged).
  IF NOT EXISTS (SELECT 1 FROM audit_log WHERE organization_id = org AND seq IS NULL) THEN
    PERFORM set_config('app.current_org_id', coalesce(caller_org, ''), true);
    RETURN 0;
  END IF;
  -- Sealing changes the tenant's rows: it waits out a move's write freeze (TNF01), and stops for
  -- good on a placement the tenant has moved away from (TNM01), like every write.
  PERFORM tenant_write_gate();
  INSERT INTO audit_chain_heads (organization_id, seq, hash) VALUES (org, 0, '\x') ON CONFLICT (organization_id) DO NOTHING;
  SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_heads WHERE organization_id = org FOR UPDATE;
  PERFORM set_config('app.audit_sealing', 'on', true);
  FOR e IN SELECT * FROM audit_log WHERE organization_id = org AND seq IS NULL ORDER BY created_at, id LIMIT max_rows FOR UPDATE LOOP
    e.seq := head_seq + 1;
    e.prev_hash := head_hash;
    e.hash := sha256(head_hash || audit_canonical(e));
    UPDATE audit_log SET seq = e.seq, prev_hash = e.prev_hash, hash = e.hash WHERE organization_id = org AND id = e.id;
    head_seq := e.seq;
    head_hash := e.hash;
    sealed := sealed + 1;
  END LOOP;
  PERFORM set_config('app.audit_sealing', '', true);
  IF sealed > 0 THEN
    UPDATE audit_chain_heads SET seq = head_seq, hash = head_hash WHERE organization_id = org;
  END IF;
  -- The caller's transaction goes on confined to whatever tenant it was before.
  PERFORM set_config('app.current_org_id', coalesce(caller_org, ''), true);
  RETURN sealed;
END $$;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  IF audit_maintenance(TG_RELID) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  -- audit_seal() sealing a pending entry: only the seal changes, once.
  IF TG_OP = 'UPDATE' AND coalesce(current_setting('app.audit_sealing', true), '') = 'on' AND OLD.hash IS NULL AND NEW.hash IS NOT NULL
     AND (NEW.organization_id, NEW.id, NEW.actor_kind, NEW.actor_id, NEW.action, NEW.target_type, NEW.target_id, NEW.metadata,
          NEW.request_id, NEW.ip, NEW.user_agent, NEW.created_at)
         IS NOT DISTINCT FROM
         (OLD.organization_id, OLD.id, OLD.actor_kind, OLD.actor_id, OLD.action, OLD.target_type, OLD.target_id, OLD.metadata,
          OLD.request_id, OLD.ip, OLD.user_agent, OLD.created_at) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- EXECUTE only for the roles given it by name (the runtime role, see grantTenantSchema).
REVOKE EXECUTE ON FUNCTION audit_seal(uuid, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_log_insert() FROM PUBLIC;
