-- The relay's first schema (§4). Times are milliseconds since the epoch.

CREATE TABLE accounts (
    number          TEXT PRIMARY KEY,
    identity_key    BLOB,                 -- 33 bytes (§2); set by device 1's first key upload
    next_device_id  INTEGER NOT NULL,     -- ids are never reused within an account
    created_ms      INTEGER NOT NULL
);

CREATE TABLE devices (
    number            TEXT NOT NULL REFERENCES accounts(number) ON DELETE CASCADE,
    device_id         INTEGER NOT NULL,
    registration_id   INTEGER NOT NULL,
    fetches_messages  INTEGER NOT NULL,
    name              TEXT,
    password_hash     TEXT NOT NULL,      -- salted PBKDF2, never the password (§2)
    created_ms        INTEGER NOT NULL,
    last_seen_ms      INTEGER NOT NULL,
    PRIMARY KEY (number, device_id)
);

CREATE TABLE signed_prekeys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    signature   BLOB NOT NULL,
    PRIMARY KEY (number, device_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE one_time_prekeys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    PRIMARY KEY (number, device_id, key_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE last_resort_keys (
    number      TEXT NOT NULL,
    device_id   INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    public_key  BLOB NOT NULL,
    PRIMARY KEY (number, device_id),
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,   -- delivery order
    guid           TEXT NOT NULL UNIQUE,
    number         TEXT NOT NULL,
    device_id      INTEGER NOT NULL,
    source         TEXT NOT NULL,
    source_device  INTEGER NOT NULL,
    type           INTEGER NOT NULL,
    timestamp      INTEGER NOT NULL,
    body           BLOB NOT NULL,
    received_ms    INTEGER NOT NULL,
    FOREIGN KEY (number, device_id) REFERENCES devices(number, device_id) ON DELETE CASCADE
);

CREATE INDEX messages_by_device ON messages (number, device_id, id);

CREATE TABLE registration_codes (
    number      TEXT PRIMARY KEY,
    code        TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);

CREATE TABLE provisioning_codes (
    number      TEXT PRIMARY KEY REFERENCES accounts(number) ON DELETE CASCADE,
    code        TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
);
