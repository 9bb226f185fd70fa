-- Tenant lifecycle (suspension, deletion with a grace period, purge), moves between
-- placements, per-placement migration bookkeeping and the platform audit log.

ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
  CHECK (status IN ('provisioning', 'active', 'suspended', 'pending_deletion', 'failed'));
-- When a deletion was asked for, and from when the purge may run. Both set only while
-- status = 'pending_deletion'; restoring the tenant clears them.
ALTER TABLE tenants ADD COLUMN deletion_requested_at timestamptz;
ALTER TABLE tenants ADD COLUMN purge_after timestamptz;
ALTER TABLE tenants ADD CONSTRAINT tenants_deletion_check
  CHECK ((status = 'pending_deletion') = (purge_after IS NOT NULL AND deletion_requested_at IS NOT NULL));
CREATE INDEX tenants_purge_due_idx ON tenants (purge_after) WHERE status = 'pending_deletion';

-- One row per move of a tenant between placements. Source and target are copied here so that a
-- move can be resumed, rolled back or cleaned up whatever the routing table says meanwhile.
CREATE TABLE tenant_moves (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  phase           text NOT NULL CHECK (phase IN (
                    'pending', 'preparing', 'copying', 'catching_up', 'frozen', 'verifying',
                    'flipped', 'cleaned', 'aborted', 'failed')),
  source_tier     text NOT NULL CHECK (source_tier IN ('shared', 'schema', 'dedicated')),
  source_server   text NOT NULL,
  source_database text NOT NULL,
  source_schema   text NOT NULL,
  target_tier     text NOT NULL CHECK (target_tier IN ('shared', 'schema', 'dedicated')),
  target_server   text NOT NULL REFERENCES database_servers (key),
  target_database text NOT NULL,
  target_schema   text NOT NULL,
  -- Per table: rows in the source when the copy started, rows copied, the last key copied.
  progress        jsonb NOT NULL DEFAULT '{}',
  rows_total      bigint NOT NULL DEFAULT 0,
  rows_copied     bigint NOT NULL DEFAULT 0,
  -- Verification result (counts and checksums per table, both sides) and the freeze it took.
  verification    jsonb,
  freeze_ms       integer,
  error           text,
  requested_by    text NOT NULL,
  -- The process running the move and its last progress. Whether it is alive is not guessed from
  -- the clock: a runner holds a session advisory lock on the move for as long as it runs.
  runner          text,
  heartbeat_at    timestamptz,
  -- Set by an abort asked from another process than the runner's; the runner stops at its next step.
  abort_requested_at timestamptz,
  cleanup_after   timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  flipped_at      timestamptz,
  finished_at     timestamptz
);
-- At most one unfinished move per tenant. 'flipped' is unfinished too: its source waits for cleanup.
CREATE UNIQUE INDEX tenant_moves_one_open ON tenant_moves (tenant_id)
  WHERE phase NOT IN ('cleaned', 'aborted', 'failed');
CREATE INDEX tenant_moves_tenant_idx ON tenant_moves (tenant_id, created_at DESC);
CREATE INDEX tenant_moves_cleanup_idx ON tenant_moves (cleanup_after) WHERE phase = 'flipped';

-- What `migrate` knows of every placement's tenant migrations, so their status is visible
-- without connecting to each. The truth stays each placement's own _migrations table.
CREATE TABLE placement_migrations (
  server_key    text NOT NULL,
  database_name text NOT NULL,
  schema_name   text NOT NULL,
  tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
  tier          text NOT NULL CHECK (tier IN ('shared', 'schema', 'dedicated')),
  version       text,
  status        text NOT NULL CHECK (status IN ('ok', 'failed', 'pending')),
  error         text,
  attempted_at  timestamptz NOT NULL DEFAULT now(),
  migrated_at   timestamptz,
  PRIMARY KEY (server_key, database_name, schema_name)
);
CREATE INDEX placement_migrations_status_idx ON placement_migrations (status, version);

-- Platform-level events: tenant lifecycle, moves, purges (with their receipts), admin actions.
-- The app role may append and read, never change or remove.
CREATE TABLE platform_audit_log (
  id          uuid PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'support', 'system', 'operator')),
  actor_id    text,
  action      text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
  tenant_id   uuid,
  target_type text,
  target_id   text,
  metadata    jsonb NOT NULL DEFAULT '{}',
  request_id  text
);
CREATE INDEX platform_audit_log_tenant_idx ON platform_audit_log (tenant_id, at DESC);
CREATE INDEX platform_audit_log_at_idx ON platform_audit_log (at DESC);

CREATE FUNCTION platform_audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the platform audit log is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER platform_audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON platform_audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION platform_audit_log_is_append_only();
