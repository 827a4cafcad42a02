-- The first failed payment of an open invoice decides how long a past-due tenant keeps access.
CREATE INDEX webhook_events_object ON webhook_events (object_id, event_type);
