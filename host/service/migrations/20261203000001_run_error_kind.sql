-- What kind of failure ended a run, as the plugin reported it (`throttled`,
-- `authentication failed`, ...): a platform acts on it (retries a throttled run,
-- shows an authentication failure as a settings problem). NULL for runs that did
-- not fail in the plugin.
ALTER TABLE runs ADD COLUMN error_kind TEXT;
