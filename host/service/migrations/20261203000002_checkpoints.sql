-- Where each connector's next run starts from (contract 0.4): the state its plugin
-- returned at the end of the last delivered run (opaque bytes; BYTEA is
-- PostgreSQL's binary type, SQLite takes any), when that run began (`state_from`,
-- ms) and when the last delivered full run began (`last_baseline`, ms). A run
-- writes its row only once it is delivered.
CREATE TABLE checkpoints (
    connector_id TEXT PRIMARY KEY REFERENCES connectors (id) ON DELETE CASCADE,
    state BYTEA,
    state_from BIGINT,
    last_baseline BIGINT,
    updated_at BIGINT NOT NULL
);

-- How often a connector's runs are a full baseline, in days (NULL: weekly); the
-- runs between are incremental when its plugin can run on changes.
ALTER TABLE connectors ADD COLUMN baseline_days BIGINT;
