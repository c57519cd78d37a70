-- Issue 12: rate-limit buckets and guess lockouts that survive a restart.

-- A token bucket of a persisted rule, saved as the time it is full again (a full bucket
-- and no bucket are the same, so only spent ones are kept; housekeeping deletes the rest).
CREATE TABLE limit_buckets (
    rule        TEXT NOT NULL,
    key         TEXT NOT NULL,
    full_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (rule, key)
);

CREATE INDEX limit_buckets_by_full_at ON limit_buckets (full_at_ms);

-- Wrong guesses in a row at one secret (the registration code of a number): the lockout
-- grows with them (limits/backoff.py). Forgotten at forget_at_ms, or on a right guess.
CREATE TABLE guess_failures (
    rule          TEXT NOT NULL,
    key           TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    last_ms       BIGINT NOT NULL,
    forget_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (rule, key)
);
