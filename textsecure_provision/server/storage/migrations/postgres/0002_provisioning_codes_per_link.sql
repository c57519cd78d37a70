-- Provisioning codes belong to a link, not to the account (§4): several may be
-- outstanding per account (the oldest dropped first past the bound), so a second
-- scan of a QR never voids the code the first scan put into its DeviceInit.
-- Codes outstanding at the upgrade are kept.
CREATE TABLE provisioning_codes_per_link (
    id          BIGSERIAL PRIMARY KEY,
    number      TEXT NOT NULL REFERENCES accounts(number) ON DELETE CASCADE,
    code        TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

INSERT INTO provisioning_codes_per_link (number, code, expires_ms)
    SELECT number, code, expires_ms FROM provisioning_codes;

DROP TABLE provisioning_codes;

ALTER TABLE provisioning_codes_per_link RENAME TO provisioning_codes;

CREATE INDEX provisioning_codes_by_number ON provisioning_codes (number, id);
CREATE INDEX provisioning_codes_by_expiry ON provisioning_codes (expires_ms);
