-- Directory sync applies WorkOS events one organization at a time, in the order WorkOS created
-- them, and never lets an older event undo a newer one about the same person (a retried delivery,
-- or an event pulled late by reconciliation: a deleted person must not be provisioned again).
-- That needs the event's organization, subject and time as columns, not only inside the payload.
ALTER TABLE workos_events
  -- The WorkOS organization the event is about (null: none, e.g. an event type not handled).
  ADD COLUMN organization_id text,
  -- What the event is about: the directory user (user and group membership events), the
  -- connection or the directory.
  ADD COLUMN subject_id text,
  -- The group of a group membership event.
  ADD COLUMN group_id text,
  -- When WorkOS created the event (received_at is when we stored it).
  ADD COLUMN occurred_at timestamptz NOT NULL DEFAULT now();

-- The head of each organization's queue: its oldest pending event.
CREATE INDEX workos_events_queue_idx ON workos_events (organization_id, occurred_at, id) WHERE status = 'pending';
-- What is already known about a person, to tell a late event from a new one.
CREATE INDEX workos_events_subject_idx ON workos_events (subject_id, occurred_at) WHERE subject_id IS NOT NULL;
