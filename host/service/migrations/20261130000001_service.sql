-- The platform service's schema. One file for SQLite and PostgreSQL: only types and
-- syntax both read the same way (TEXT, BIGINT; times in milliseconds since the Unix
-- epoch, UTC; flags as 0/1; JSON kept as TEXT).

-- The plugins found in the plugins directory, as last loaded.
CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    contract TEXT NOT NULL,
    description TEXT NOT NULL,
    scanner_type TEXT NOT NULL,
    fields TEXT NOT NULL,
    egress TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    file_name TEXT NOT NULL,
    loaded_at BIGINT NOT NULL
);

-- Configured connectors. Secret values are sealed (XChaCha20-Poly1305) in `secrets`;
-- `trust` is the egress and secret bindings an admin approved when saving.
CREATE TABLE connectors (
    id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL,
    secrets TEXT NOT NULL,
    cvm TEXT,
    schedule TEXT,
    next_due_at BIGINT,
    enabled BIGINT NOT NULL,
    trust TEXT NOT NULL,
    trusted_version TEXT NOT NULL,
    paused_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    triggered_by TEXT NOT NULL,
    status TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    worker TEXT,
    attempt BIGINT NOT NULL,
    delivery_started BIGINT NOT NULL,
    enqueued BIGINT NOT NULL,
    progress TEXT,
    summary TEXT,
    error TEXT,
    cvm_result TEXT,
    duration_ms BIGINT,
    assets BIGINT,
    open_vulnerabilities BIGINT,
    rows_read BIGINT,
    api_calls BIGINT,
    throttled BIGINT
);
-- At most one queued or running run per connector: a schedule that comes due while
-- a run is going does not start a second one, even with many schedulers.
CREATE UNIQUE INDEX runs_one_active ON runs (connector_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_connector ON runs (connector_id, queued_at);

-- A run's log lines (masked by the host before they are written).
CREATE TABLE run_logs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- A run's KDI files, gzipped, kept until `expires_at` (the retention period).
-- `bytes` is the file's size. BYTEA is PostgreSQL's binary type; SQLite takes any
-- type name and keeps a blob as a blob.
CREATE TABLE run_files (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    content BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- The last successful upload of each CVM connector (the mass-close guard's baseline),
-- shared by every worker.
CREATE TABLE baselines (
    instance_key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- API tokens, by SHA-256 of the token.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Facts about the database itself, such as a value sealed with the secret key, which
-- tells at start whether the key is the one the secrets were sealed with.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
