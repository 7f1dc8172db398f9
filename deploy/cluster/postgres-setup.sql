-- The database and role the nodes share (run once, as a superuser, e.g. `psql -f`).
-- portcullis creates and migrates its tables itself at start (under an advisory lock, so
-- nodes starting together are fine); it needs no superuser rights.
CREATE ROLE portcullis LOGIN PASSWORD 'change-me';
CREATE DATABASE portcullis OWNER portcullis;
-- In pg_hba.conf, only the nodes, only with TLS and SCRAM:
--   hostssl portcullis portcullis 10.0.1.11/32 scram-sha-256
--   hostssl portcullis portcullis 10.0.1.12/32 scram-sha-256
