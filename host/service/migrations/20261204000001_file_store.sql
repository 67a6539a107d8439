-- Run files move out of the database into a file store (a directory, or an object
-- store for many machines): a row keeps where its file is, its size as kept (gzipped)
-- and the SHA-256 of its content. `content` stays only for files written before,
-- until `connector-host files migrate` moves them. SQLite cannot drop a NOT NULL
-- constraint in place, so the table is rebuilt (the same statements on PostgreSQL).
CREATE TABLE run_files_kept (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    content BYTEA,
    location TEXT,
    stored_bytes BIGINT,
    sha256 TEXT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, name)
);
INSERT INTO run_files_kept (run_id, name, bytes, content, expires_at)
    SELECT run_id, name, bytes, content, expires_at FROM run_files;
DROP TABLE run_files;
ALTER TABLE run_files_kept RENAME TO run_files;
CREATE INDEX run_files_by_expiry ON run_files (expires_at);
