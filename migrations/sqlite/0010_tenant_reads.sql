-- PostgreSQL's migration 0010 makes a reader of one tenant's usage read only that tenant's events not
-- folded yet, changes the rollups' indexes and checks tenants where rollups are created. SQLite folds
-- nothing (each ingest adds to its rollups) and keeps its foreign key and indexes: nothing changes here.
SELECT 1;
