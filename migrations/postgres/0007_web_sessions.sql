-- The pages' sign-in sessions. The cookie holds a random id; only an HMAC of it (keyed by JWT_SECRET) is
-- stored, so a copy of the database opens no session. Signing out deletes the row: the cookie replayed afterwards finds nothing.
-- A row outlives its session for a while (the page then says the session expired, rather than only
-- asking to sign in) and is pruned after that.
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    sub        TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    role       TEXT NOT NULL,
    email      TEXT,
    token_exp  BIGINT NOT NULL,
    -- Whom the token was minted for (`aud` as a JSON array of strings, `iss`): checked against
    -- JWT_AUDIENCE / JWT_ISSUER on every request, as a token is.
    audience   TEXT NOT NULL,
    issuer     TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_expires_at ON web_sessions (expires_at);
