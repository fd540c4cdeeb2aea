-- Gateway: API tokens (stored as SHA-256 hashes only) and browser sessions.
-- The raw token is shown once by `tmi tokens create` and never stored.

CREATE TABLE gateway_api_token (
    id           bigserial PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text        NOT NULL CHECK (role IN ('researcher', 'admin', 'service')),
    token_hash   bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- A browser session created by pasting a token on the login page. The cookie carries a random
-- session id; only its hash is stored, and the session dies with its token.
CREATE TABLE gateway_web_session (
    id_hash    bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    token_id   bigint      NOT NULL REFERENCES gateway_api_token (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX gateway_web_session_expires_idx ON gateway_web_session (expires_at);
