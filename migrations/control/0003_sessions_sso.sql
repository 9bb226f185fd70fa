-- Server-side sessions (every token names one; logout, "sign out everywhere" and directory
-- deprovisioning revoke them), and enterprise sign-in through WorkOS: the link between a tenant
-- and its WorkOS organization, its sign-in settings, identities provisioned just in time, the
-- directory's users, and the webhook events received.

CREATE TABLE sessions (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  method      text NOT NULL CHECK (method IN ('dev', 'sso')),
  -- The tenant whose identity provider signed this session in (SSO only): deprovisioning there
  -- revokes it.
  tenant_id   uuid REFERENCES tenants (id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz,
  revoked_reason text
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_tenant_user_idx ON sessions (tenant_id, user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);

-- Every app instance caches session checks; a revocation is announced so all drop it at once.
CREATE FUNCTION notify_session_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
    PERFORM pg_notify('tenancy_routing', json_build_object('kind', 'session', 'sessionId', NEW.id)::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions
  FOR EACH ROW EXECUTE FUNCTION notify_session_change();

-- A tenant's link to its WorkOS organization and how its people sign in.
CREATE TABLE sso_links (
  tenant_id              uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  workos_organization_id text NOT NULL UNIQUE CHECK (workos_organization_id ~ '^org_[A-Za-z0-9]{1,64}$'),
  -- Once on, members whose email is on one of the tenant's verified domains sign in only through SSO.
  enforce_sso            boolean NOT NULL DEFAULT false,
  -- Sign-ins started at the identity provider (no state) are accepted only when this is on.
  allow_idp_initiated    boolean NOT NULL DEFAULT false,
  -- IdP role slug or group name -> tenant role; default_role for everyone else.
  role_mapping           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(role_mapping) = 'object'),
  default_role           text NOT NULL DEFAULT 'member' CHECK (default_role IN ('admin', 'member', 'viewer', 'billing')),
  connection_state       text NOT NULL DEFAULT 'none' CHECK (connection_state IN ('none', 'active', 'inactive')),
  directory_state        text NOT NULL DEFAULT 'none' CHECK (directory_state IN ('none', 'active', 'inactive')),
  created_at             timestamptz NOT NULL DEFAULT now(),
  updated_at             timestamptz NOT NULL DEFAULT now()
);

-- The tenant's domains as WorkOS knows them; only verified ones route sign-ins and enforce SSO.
CREATE TABLE sso_domains (
  domain     text PRIMARY KEY CHECK (domain = lower(domain) AND domain ~ '^[a-z0-9.-]+\.[a-z]{2,}$'),
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  verified   boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sso_domains_tenant_idx ON sso_domains (tenant_id);

-- A sign-in state is single use: its nonce is recorded when the callback consumes it.
CREATE TABLE sso_used_states (
  nonce      text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);

-- People provisioned just in time, by (WorkOS organization, IdP user id), and what the IdP last
-- said of their role and groups (role mapping is recomputed at every sign-in and directory event).
CREATE TABLE sso_identities (
  workos_organization_id text NOT NULL,
  idp_id                 text NOT NULL,
  tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id                uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  directory_user_id      text,
  idp_role               text,
  idp_groups             text[] NOT NULL DEFAULT '{}',
  state                  text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'inactive', 'deleted')),
  updated_at             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workos_organization_id, idp_id)
);
CREATE UNIQUE INDEX sso_identities_directory_user_key ON sso_identities (directory_user_id) WHERE directory_user_id IS NOT NULL;
CREATE INDEX sso_identities_tenant_user_idx ON sso_identities (tenant_id, user_id);

-- WorkOS webhook events, stored once by id (deliveries are retried and may repeat), then
-- processed asynchronously with retries.
CREATE TABLE workos_events (
  id              text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
  event           text NOT NULL,
  payload         jsonb NOT NULL,
  source          text NOT NULL CHECK (source IN ('webhook', 'reconcile')),
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'processed', 'ignored', 'failed')),
  attempts        integer NOT NULL DEFAULT 0,
  last_error      text,
  received_at     timestamptz NOT NULL DEFAULT now(),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  processed_at    timestamptz
);
CREATE INDEX workos_events_due_idx ON workos_events (next_attempt_at) WHERE status = 'pending';

-- Where the reconciliation (pulling events through the events API) left off.
CREATE TABLE workos_event_cursor (
  id         integer PRIMARY KEY CHECK (id = 1),
  after      text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
