-- Billing: plans and their features, each tenant's billing state (kept apart from the tenant
-- itself), payment-provider events received, and usage per tenant and day.

CREATE TABLE plans (
  key        text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_-]{0,39}$'),
  name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  -- Cheapest first: a tenant created without a plan gets the cheapest one its tier allows.
  rank       integer NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per plan and feature. A limit is an integer, NULL meaning unlimited; a flag is a
-- boolean. Which features exist, and of which kind, is src/billing/features.ts.
CREATE TABLE plan_features (
  plan_key    text NOT NULL REFERENCES plans (key) ON DELETE CASCADE,
  feature     text NOT NULL CHECK (feature ~ '^[a-z][a-z0-9_]{0,62}$'),
  kind        text NOT NULL CHECK (kind IN ('limit', 'flag')),
  limit_value bigint CHECK (limit_value >= 0),
  enabled     boolean,
  PRIMARY KEY (plan_key, feature),
  CONSTRAINT plan_features_value_check CHECK (
    (kind = 'limit' AND enabled IS NULL) OR (kind = 'flag' AND enabled IS NOT NULL AND limit_value IS NULL)
  )
);

INSERT INTO plans (key, name, rank) VALUES ('free', 'Free', 10), ('pro', 'Pro', 20), ('enterprise', 'Enterprise', 30);

INSERT INTO plan_features (plan_key, feature, kind, limit_value, enabled) VALUES
  ('free', 'seats', 'limit', 3, NULL),
  ('free', 'projects', 'limit', 3, NULL),
  ('free', 'tasks_per_project', 'limit', 100, NULL),
  ('free', 'api_requests_per_minute', 'limit', 600, NULL),
  ('free', 'statement_timeout_ms', 'limit', 2000, NULL),
  ('free', 'concurrent_requests', 'limit', 2, NULL),
  ('free', 'tier_shared', 'flag', NULL, true),
  ('free', 'tier_schema', 'flag', NULL, false),
  ('free', 'tier_dedicated', 'flag', NULL, false),
  ('pro', 'seats', 'limit', 25, NULL),
  ('pro', 'projects', 'limit', 50, NULL),
  ('pro', 'tasks_per_project', 'limit', 5000, NULL),
  ('pro', 'api_requests_per_minute', 'limit', 6000, NULL),
  ('pro', 'statement_timeout_ms', 'limit', 5000, NULL),
  ('pro', 'concurrent_requests', 'limit', 4, NULL),
  ('pro', 'tier_shared', 'flag', NULL, true),
  ('pro', 'tier_schema', 'flag', NULL, true),
  ('pro', 'tier_dedicated', 'flag', NULL, false),
  ('enterprise', 'seats', 'limit', NULL, NULL),
  ('enterprise', 'projects', 'limit', NULL, NULL),
  ('enterprise', 'tasks_per_project', 'limit', NULL, NULL),
  ('enterprise', 'api_requests_per_minute', 'limit', NULL, NULL),
  ('enterprise', 'statement_timeout_ms', 'limit', 30000, NULL),
  ('enterprise', 'concurrent_requests', 'limit', 8, NULL),
  ('enterprise', 'tier_shared', 'flag', NULL, true),
  ('enterprise', 'tier_schema', 'flag', NULL, true),
  ('enterprise', 'tier_dedicated', 'flag', NULL, true);

CREATE TABLE organization_billing (
  tenant_id                uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
  plan_key                 text NOT NULL REFERENCES plans (key),
  status                   text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
  trial_ends_at            timestamptz,
  current_period_end       timestamptz,
  -- Set when the status turns past_due, cleared when it leaves it: the grace period counts from here.
  past_due_since           timestamptz,
  -- Seats bought from the payment provider (the subscription's quantity); the plan's seat limit still applies.
  seats                    integer CHECK (seats >= 0),
  provider_customer_id     text UNIQUE CHECK (length(provider_customer_id) BETWEEN 1 AND 255),
  provider_subscription_id text UNIQUE CHECK (length(provider_subscription_id) BETWEEN 1 AND 255),
  -- When the payment provider created the last event applied here: older events arriving late are ignored.
  provider_event_at        timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT organization_billing_past_due_check CHECK ((status = 'past_due') = (past_due_since IS NOT NULL))
);
CREATE INDEX organization_billing_plan_idx ON organization_billing (plan_key);

-- Tenants that existed before billing keep working as they did: no limits they could already be over.
INSERT INTO organization_billing (tenant_id, plan_key, status)
  SELECT id, 'enterprise', 'active' FROM tenants;

-- Every instance caches billing state; a change by the API, a webhook or plain SQL is announced.
CREATE FUNCTION notify_billing_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'organization_billing' THEN
    PERFORM pg_notify('tenancy_routing', json_build_object('kind', 'billing', 'tenantId', (CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END).tenant_id)::text);
  ELSE
    PERFORM pg_notify('tenancy_routing', json_build_object('kind', 'billing')::text);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER organization_billing_change AFTER INSERT OR UPDATE OR DELETE ON organization_billing
  FOR EACH ROW EXECUTE FUNCTION notify_billing_change();
CREATE TRIGGER plan_features_change AFTER INSERT OR UPDATE OR DELETE ON plan_features
  FOR EACH STATEMENT EXECUTE FUNCTION notify_billing_change();
CREATE TRIGGER plans_change AFTER INSERT OR UPDATE OR DELETE ON plans
  FOR EACH STATEMENT EXECUTE FUNCTION notify_billing_change();

-- Payment-provider (Stripe) events, stored once by their id: a duplicate delivery changes nothing.
CREATE TABLE billing_events (
  id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
  provider    text NOT NULL DEFAULT 'stripe',
  type        text NOT NULL,
  created_at  timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  tenant_id   uuid REFERENCES tenants (id) ON DELETE SET NULL,
  -- applied, ignored (no tenant, a type we do not act on, or older than what was applied) 
  outcome     text NOT NULL CHECK (outcome IN ('applied', 'ignored')),
  detail      text
);
CREATE INDEX billing_events_tenant_idx ON billing_events (tenant_id, received_at DESC);

-- Usage per tenant and UTC day. Counters are added to in batches by each app instance (never one
-- write per request); rows stored and active seats are snapshots, overwritten by the sweeper.
CREATE TABLE usage_daily (
  tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  day          date NOT NULL,
  requests     bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
  errors       bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
  writes       bigint NOT NULL DEFAULT 0 CHECK (writes >= 0),
  db_time_ms   double precision NOT NULL DEFAULT 0 CHECK (db_time_ms >= 0),
  rows_stored  jsonb,
  active_seats integer CHECK (active_seats >= 0),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, day)
);
CREATE INDEX usage_daily_day_idx ON usage_daily (day);
