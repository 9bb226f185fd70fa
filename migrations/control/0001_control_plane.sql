-- Control plane: routing table, database server registry, users and memberships.
-- Global tables (no RLS); only platform code touches them.

CREATE TABLE database_servers (
  key           text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_-]{0,62}$'),
  host          text NOT NULL,
  port          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  registered_at timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
  id            uuid PRIMARY KEY,
  slug          text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  status        text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'failed')),
  status_reason text,
  tier          text NOT NULL CHECK (tier IN ('shared', 'schema', 'dedicated')),
  server_key    text NOT NULL REFERENCES database_servers (key),
  database_name text NOT NULL CHECK (database_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  schema_name   text NOT NULL CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT tenants_slug_key UNIQUE (slug)
);
CREATE INDEX tenants_created_idx ON tenants (created_at, id);
CREATE INDEX tenants_server_idx ON tenants (server_key);

CREATE TABLE users (
  id         uuid PRIMARY KEY,
  email      text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE memberships (
  tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role       text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer', 'billing')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);
CREATE INDEX memberships_tenant_created_idx ON memberships (tenant_id, created_at, user_id);

-- Every app instance caches routes and memberships; any change, by the API, the CLI or plain
-- SQL, is announced so that all of them drop the stale entry at once.
CREATE FUNCTION notify_routing_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  r := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  IF TG_TABLE_NAME = 'tenants' THEN
    PERFORM pg_notify('tenancy_routing', json_build_object('kind', 'tenant', 'tenantId', r.id, 'slug', r.slug, 'oldSlug', OLD.slug)::text);
  ELSE
    PERFORM pg_notify('tenancy_routing', json_build_object('kind', 'membership', 'tenantId', r.tenant_id, 'userId', r.user_id)::text);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER tenants_routing_change AFTER INSERT OR UPDATE OR DELETE ON tenants
  FOR EACH ROW EXECUTE FUNCTION notify_routing_change();
CREATE TRIGGER memberships_routing_change AFTER INSERT OR UPDATE OR DELETE ON memberships
  FOR EACH ROW EXECUTE FUNCTION notify_routing_change();
