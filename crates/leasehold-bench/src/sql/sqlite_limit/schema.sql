CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  queue            TEXT    NOT NULL DEFAULT 'default',
  state            INTEGER NOT NULL DEFAULT 0,
  run_at           INTEGER NOT NULL,
  lease_expires_at INTEGER,
  attempt          INTEGER NOT NULL DEFAULT 0,
  payload          TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_available_idx ON jobs (run_at, id) WHERE state = 0;
CREATE TABLE leases (
  key        TEXT    PRIMARY KEY,
  token      INTEGER NOT NULL,
  owner      TEXT    NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE lease_seq (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO lease_seq VALUES (1, 0);
