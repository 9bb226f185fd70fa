-- Tenant audit entries of changes that live in the control plane (members and roles, lifecycle,
-- SSO): written here in the same transaction as the change, then delivered to the tenant's own
-- log (in its placement) and removed. An entry keeps its id on the way, so a delivery repeated
-- after a crash is recorded once.
CREATE TABLE audit_outbox (
  id         uuid PRIMARY KEY,
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  entry      jsonb NOT NULL,
  request    jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  attempts   integer NOT NULL DEFAULT 0,
  last_error text
);
CREATE INDEX audit_outbox_tenant_idx ON audit_outbox (tenant_id, created_at, id);

-- Checkpoints of every tenant's audit chain head (what reveals a cut-off tail): written by the
-- platform's owner role only, so the app role, which may append to the platform log, cannot
-- forge one.
CREATE TABLE audit_checkpoints (
  id        uuid PRIMARY KEY,
  tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  seq       bigint NOT NULL CHECK (seq > 0),
  hash      text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  source    text NOT NULL,
  at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX audit_checkpoints_tenant_idx ON audit_checkpoints (tenant_id, at DESC, id DESC);
