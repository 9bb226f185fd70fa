-- Support access: platform support staff reach into a tenant only through an explicit, expiring
-- grant. A grant is requested with a reason; read grants are active at once unless the tenant asks
-- to approve them; write grants are approved by the tenant's owners or admins, or by a platform
-- admin, as the tenant chooses. "expired" is never stored: an active grant past expires_at, or a
-- request left undecided for a day, reads as expired (see src/support/support-grants.store.ts).

CREATE TABLE support_grants (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  requester_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
  ticket        text CHECK (length(ticket) BETWEEN 1 AND 200),
  access        text NOT NULL CHECK (access IN ('read', 'write')),
  minutes       integer NOT NULL CHECK (minutes BETWEEN 1 AND 1440),
  status        text NOT NULL CHECK (status IN ('requested', 'active', 'denied', 'revoked')),
  requested_at  timestamptz NOT NULL DEFAULT now(),
  -- Who approves (decided when requested, from the tenant's settings) and, once approved, who did.
  approver_kind text NOT NULL CHECK (approver_kind IN ('tenant', 'platform', 'automatic')),
  approved_by   uuid REFERENCES users (id) ON DELETE SET NULL,
  approved_at   timestamptz,
  expires_at    timestamptz,
  denied_by     uuid REFERENCES users (id) ON DELETE SET NULL,
  denied_at     timestamptz,
  deny_reason   text CHECK (length(deny_reason) BETWEEN 1 AND 500),
  revoked_by    uuid REFERENCES users (id) ON DELETE SET NULL,
  revoked_at    timestamptz,
  revoke_reason text CHECK (length(revoke_reason) BETWEEN 1 AND 500),
  -- An active grant has its window; nobody approves their own request.
  CONSTRAINT support_grants_active_check CHECK (status <> 'active' OR (approved_at IS NOT NULL AND expires_at IS NOT NULL)),
  CONSTRAINT support_grants_not_self_approved CHECK (approved_by IS DISTINCT FROM requester_id)
);
-- The access check made on every request of a support user: their grants in one tenant.
CREATE INDEX support_grants_access_idx ON support_grants (tenant_id, requester_id, requested_at DESC);
CREATE INDEX support_grants_requester_idx ON support_grants (requester_id, id DESC);
CREATE INDEX support_grants_tenant_idx ON support_grants (tenant_id, id DESC);

-- Per tenant; a tenant without a row has the defaults.
CREATE TABLE tenant_support_settings (
  tenant_id              uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  read_requires_approval boolean NOT NULL DEFAULT false,
  write_approver         text NOT NULL DEFAULT 'tenant' CHECK (write_approver IN ('tenant', 'platform')),
  updated_at             timestamptz NOT NULL DEFAULT now()
);
