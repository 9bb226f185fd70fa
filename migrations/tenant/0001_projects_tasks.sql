-- Tenant data plane, applied identically to every placement (shared tenant_data schema,
-- each tenant schema, each dedicated database). Unqualified names resolve to the placement.
-- organization_id defaults to the transaction's tenant, so product code never sets it, and the
-- policy (USING + WITH CHECK) fails closed when no tenant is set.

CREATE TABLE projects (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  id              uuid NOT NULL,
  name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description     text CHECK (length(description) <= 5000),
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (organization_id, id)
);
-- Lists are newest first by the time-ordered id: the primary key serves them.

CREATE TABLE tasks (
  organization_id uuid NOT NULL DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  id              uuid NOT NULL,
  project_id      uuid NOT NULL,
  title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
  status          text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'doing', 'done')),
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (organization_id, id),
  FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX tasks_keyset_idx ON tasks (organization_id, project_id, id DESC);

ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON projects
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tasks
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);
