-- Moves between placements need two things from every placement, checked by each write
-- transaction of the app right after it sets its tenant (tenant_write_gate() in its prologue):
--  * a write freeze: the mover holds an exclusive advisory lock keyed by the tenant; writers take
--    it shared with try-lock, so during the freeze they fail at once (SQLSTATE TNF01) instead of
--    queueing, and the mover's lock waits only for writes already under way;
--  * a fence: once a tenant has moved away, its rows left here refuse writes for good (TNM01),
--    even from an app instance that has not heard of the move yet.

CREATE TABLE tenant_fences (
  organization_id uuid PRIMARY KEY DEFAULT nullif(current_setting('app.current_org_id', true), '')::uuid,
  move_id         uuid NOT NULL,
  fenced_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE tenant_fences ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_fences FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_fences
  USING (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid)
  WITH CHECK (organization_id = nullif(current_setting('app.current_org_id', true), '')::uuid);

CREATE FUNCTION tenant_write_gate() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  org text := current_setting('app.current_org_id', true);
BEGIN
  IF NOT pg_try_advisory_xact_lock_shared(hashtextextended('tenant-writes:' || coalesce(org, ''), 0)) THEN
    RAISE EXCEPTION 'writes to this tenant are paused while it moves' USING ERRCODE = 'TNF01';
  END IF;
  IF EXISTS (SELECT 1 FROM tenant_fences) THEN
    RAISE EXCEPTION 'this tenant has moved to another placement' USING ERRCODE = 'TNM01';
  END IF;
END $$;
