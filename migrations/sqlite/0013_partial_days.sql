-- PostgreSQL's migration 0013 reads a day that straddles free time through a function whose plan does not
-- depend on statistics. SQLite plans each statement with its own rules: nothing changes here.
SELECT 1;
