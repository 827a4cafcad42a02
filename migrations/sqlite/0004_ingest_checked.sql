-- PostgreSQL only: its checked ingest as function calls (see the PostgreSQL migration). SQLite runs
-- the same steps as statements of one transaction, each an in-process call.
SELECT 1;
