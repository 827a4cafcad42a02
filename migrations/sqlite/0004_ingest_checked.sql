-- PostgreSQL only: its checked ingest as one function call (see the PostgreSQL migration). SQLite runs
-- the same steps as statements of one transaction, each an in-process call.
SELECT 1;
