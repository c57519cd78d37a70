-- The relay's first schema on PostgreSQL (§4): the same tables as sqlite/0001_initial.sql.
-- Times are milliseconds since the epoch. Ids that §4 carries as uint32 (registration ids,
-- key ids) are BIGINT: INTEGER is signed 32-bit.

CREATE TABLE accounts (
    number          TEXT PRIMARY KEY,
    identity_key    BYTEA,                -- 33 bytes (§2); set by device 1's first key upload
    next_device_id  INTEGER NOT NULL,     -- ids are never reused within an account
    created_ms      BIGINT NOT NULL
);

CREATE TABLE devices (
    number            TEXT NOT NULL REFERENCES accounts(number) ON DELETE CASCADE,
    device_id         INTEGER NOT NULL,
    registration_id   BIGINT NOT NULL,
    fetches_messages  BOOLEAN NOT NULL,
    name              TEXT,
    password_hash     TEXT NOT NULL,      -- salted PBKDF2, never the password (§2)
    created_ms        BIGINT NOT NULL,
    last_seen_ms      BIGINT NOT NULL,
    PRIMARY KEY (number, device_id)
);

CREATE TABLE signed_prekeys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      BIGINT NOT NULL,
    public_key  BYTEA NOT NULL,
    signature   BYTEA NOT NULL,
    PRIMARY KEY (number, device_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE one_time_prekeys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      BIGINT NOT NULL,
    public_key  BYTEA NOT NULL,
    PRIMARY KEY (number, device_id, key_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE last_resort_keys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      BIGINT NOT NULL,
    public_key  BYTEA NOT NULL,
    PRIMARY KEY (number, device_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE messages (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- delivery order
    guid           TEXT NOT NULL UNIQUE,
    number         TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    source         TEXT NOT NULL,
    source_device  INTEGER NOT NULL,
    type           INTEGER NOT NULL,
    timestamp      BIGINT NOT NULL,
    body           BYTEA NOT NULL,
    received_ms    BIGINT NOT NULL,
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE INDEX messages_by_device ON messages (number, device_id, id);

CREATE TABLE registration_codes (
    number      TEXT PRIMARY KEY,
    code        TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

CREATE TABLE provisioning_codes (
    number      TEXT PRIMARY KEY REFERENCES accounts(number) ON DELETE CASCADE,
    code        TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

-- Housekeeping deletes expired codes every minute (purge_expired).
CREATE INDEX registration_codes_by_expiry ON registration_codes (expires_ms);
CREATE INDEX provisioning_codes_by_expiry ON provisioning_codes (expires_ms);
