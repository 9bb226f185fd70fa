-- The seal moves out of the entry: entries are written once and never changed, and the hash chain
-- lives in audit_chain (one row per sealed entry: its sequence number and hashes).
--
-- Why: sealing used to UPDATE each entry (a new row version, three index entries, a trigger call
-- and a dead tuple per entry), and an entry needed four index entries and a speculative insert
-- when written. Under a steady write load that cost an audited write about a quarter of its
-- throughput (BENCHMARKS.md, "Audit log"). Now a write adds an entry (two indexes) and a row to
-- audit_pending (no index) in one statement; sealing deletes the pending rows and appends to
-- audit_chain in one set-based statement.
--
-- The canonical form (what each hash covers) is unchanged, so every chain sealed before this
-- migration still verifies.

-- The migration reads and moves every tenant's rows, as the tables' owner.
ALTER TABLE audit_log NO FORCE ROW LEVEL SECURITY;

-- The chain: an entry's place (seq, gapless from 1) and its hashes; appended by audit_seal() only.
CREATE TABLE audit_chain (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  seq             bigint NOT NULL,
  entry_id        uuid NOT NULL,
  prev_hash       bytea NOT NULL,
  hash            bytea NOT NULL,
  PRIMARY KEY (organization_id, seq),
  -- No foreign key to the entry: its check would lock (and so rewrite) the entry's row at every
  -- seal. verify finds an entry missing from under its chain row.
  CONSTRAINT audit_chain_entry_key UNIQUE (organization_id, entry_id)
);

-- Entries written but not sealed yet: a queue, filled by the statement that writes the entry,
-- emptied by audit_seal() in the transaction that seals. Keyed by tenant: on the shared tier it
-- holds every tenant's moment of writes (and their dead rows until vacuum), and each tenant's
-- sealing must read only its own. Bookkeeping, not tenant data: a move rebuilds it from what it
-- copies (triggers below).
CREATE TABLE audit_pending (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  id              uuid NOT NULL,
  PRIMARY KEY (organization_id, id)
);

-- Every tenant's seals and unsealed entries, moved before row-level security is switched on for
-- the new tables (the owner writes all tenants' rows here, with no tenant set).
INSERT INTO audit_chain (organization_id, seq, entry_id, prev_hash, hash)
  SELECT organization_id, seq, id, prev_hash, hash FROM audit_log WHERE seq IS NOT NULL;
INSERT INTO audit_pending (organization_id, id)
  SELECT organization_id, id FROM audit_log WHERE seq IS NULL;

ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_chain
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);
ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_pending
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);

-- The entry loses its seal columns (and with them the sequence's unique index and the index of
-- unsealed entries); nothing updates an entry any more.
DROP TRIGGER audit_log_insert ON audit_log;
DROP FUNCTION audit_log_insert();
DROP FUNCTION audit_seal(uuid, integer);
DROP FUNCTION audit_canonical(audit_log);
ALTER TABLE audit_log DROP CONSTRAINT audit_log_sealed_check;
ALTER TABLE audit_log DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;

-- What an entry's hash covers, as before: its sequence number and every field, as a JSON array
-- (jsonb renders the metadata with sorted keys), the time in UTC with microseconds.
CREATE FUNCTION audit_canonical(a audit_log, seq bigint) RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT convert_to(json_build_array(
    seq, a.id, a.organization_id, a.actor_kind, a.actor_id, a.action, a.target_type, a.target_id,
    a.metadata, a.request_id, a.ip, a.user_agent,
    to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text, 'UTF8')
$$;

-- The chain as a running aggregate: each step hashes the previous hash (the head's, for the
-- first) with the next entry's canonical form. Used as a window function in sequence order.
CREATE FUNCTION audit_chain_step(state bytea, head bytea, canonical bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT sha256(coalesce(state, head) || canonical)
$$;
CREATE AGGREGATE audit_chain_hash(bytea, bytea) (SFUNC = audit_chain_step, STYPE = bytea);

-- Append-only, for everyone but the platform's data tools (a move's copy, a purge): no UPDATE,
-- DELETE or TRUNCATE of entries or of the chain, not even a seal's.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  IF audit_maintenance(TG_RELID) THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Copies made by a platform data tool (a move) in maintenance mode, in either order: an entry
-- copied without its chain row is pending until that row is copied too; the tenant's head
-- follows the greatest sequence number copied. The app never gets here (its inserts are not in maintenance mode, and
-- it has no privilege on audit_chain).
CREATE FUNCTION audit_copy_bookkeeping() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  IF NOT audit_maintenance(TG_RELID) THEN
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'audit_log' THEN
    IF NOT EXISTS (SELECT 1 FROM audit_chain WHERE organization_id = NEW.organization_id AND entry_id = NEW.id) THEN
      INSERT INTO audit_pending (organization_id, id) VALUES (NEW.organization_id, NEW.id);
    END IF;
  ELSE
    DELETE FROM audit_pending WHERE organization_id = NEW.organization_id AND id = NEW.entry_id;
    INSERT INTO audit_chain_heads (organization_id, seq, hash) VALUES (NEW.organization_id, NEW.seq, NEW.hash)
    ON CONFLICT (organization_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash WHERE audit_chain_heads.seq < EXCLUDED.seq;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_log_copied AFTER INSERT ON audit_log FOR EACH ROW
  WHEN (current_setting('app.audit_maintenance', true) = 'on')
  EXECUTE FUNCTION audit_copy_bookkeeping();
CREATE TRIGGER audit_chain_copied AFTER INSERT ON audit_chain FOR EACH ROW
  WHEN (current_setting('app.audit_maintenance', true) = 'on')
  EXECUTE FUNCTION audit_copy_bookkeeping();

-- Seals the tenant's pending entries onto its chain (at most max_rows a call, each batch in the
-- order the entries were written); returns how many. Only for the tenant the caller's transaction is confined to (app.current_org_id), or in
-- maintenance; concurrent calls for one tenant queue on the head's row lock, and the second then
-- finds the first one's entries gone from the queue. Like every SECURITY DEFINER function here,
-- its search_path names pg_temp last (see libs/postgres/migrator.ts).
CREATE FUNCTION audit_seal(org uuid, max_rows integer DEFAULT 10000) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  head_seq bigint;
  head_hash bytea;
  taken uuid[];
  sealed_before uuid[];
  sealed integer;
  caller_org text := current_setting('app.current_org_id', true);
BEGIN
  IF caller_org IS DISTINCT FROM org::text AND NOT audit_maintenance('audit_log') THEN
    RAISE EXCEPTION 'audit_seal() seals the current tenant''s entries only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM set_config('app.current_org_id', org::text, true);
  -- Nothing pending: touch nothing (not even a head row; the tenant may have just been purged).
  IF NOT EXISTS (SELECT 1 FROM audit_pending WHERE organization_id = org) THEN
    PERFORM set_config('app.current_org_id', coalesce(caller_org, ''), true);
    RETURN 0;
  END IF;
  -- Sealing changes the tenant's rows: it waits out a move's write freeze (TNF01), and stops for
  -- good on a placement the tenant has moved away from (TNM01), like every write.
  PERFORM tenant_write_gate();
  INSERT INTO audit_chain_heads (organization_id, seq, hash) VALUES (org, 0, '\x') ON CONFLICT (organization_id) DO NOTHING;
  SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_heads WHERE organization_id = org FOR UPDATE;
  -- Every step looks rows up by key lists (arrays), never by a join the planner could turn into a
  -- nested loop over the whole chain: the queue's statistics are usually those of a near-empty
  -- table, and a backlog (after an outage, a migration) must still seal in linear time.
  WITH batch AS (
    DELETE FROM audit_pending
     WHERE ctid = ANY (ARRAY(SELECT ctid FROM audit_pending WHERE organization_id = org LIMIT max_rows))
    RETURNING id
  )
  SELECT coalesce(array_agg(id), '{}') INTO taken FROM batch;
  -- An entry already on the chain (a copy that brought its place along) is not sealed again.
  SELECT coalesce(array_agg(entry_id), '{}') INTO sealed_before FROM audit_chain WHERE organization_id = org AND entry_id = ANY (taken);
  WITH entries AS (
    SELECT a, head_seq + row_number() OVER (ORDER BY a.created_at, a.id) AS seq
      FROM audit_log a
     WHERE a.organization_id = org AND a.id = ANY (taken) AND NOT (a.id = ANY (sealed_before))
  ), chained AS (
    SELECT seq, (a).id AS id, audit_chain_hash(head_hash, audit_canonical(a, seq)) OVER (ORDER BY seq) AS hash FROM entries
  ), appended AS (
    INSERT INTO audit_chain (organization_id, seq, entry_id, prev_hash, hash)
    SELECT org, seq, id, coalesce(lag(hash) OVER (ORDER BY seq), head_hash), hash FROM chained
    RETURNING seq, hash
  )
  SELECT count(*), max(seq), (array_agg(hash ORDER BY seq DESC))[1] INTO sealed, head_seq, head_hash FROM appended;
  IF sealed > 0 THEN
    UPDATE audit_chain_heads SET seq = head_seq, hash = head_hash WHERE organization_id = org;
  END IF;
  -- The caller's transaction goes on confined to whatever tenant it was before.
  PERFORM set_config('app.current_org_id', coalesce(caller_org, ''), true);
  RETURN sealed;
END $$;

REVOKE EXECUTE ON FUNCTION audit_seal(uuid, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION audit_copy_bookkeeping() FROM PUBLIC;
