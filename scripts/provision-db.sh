#!/usr/bin/env bash
# provision-db.sh creates Manushya's database and its two roles on the local
# PostgreSQL, idempotently:
#   manushya      owns the schemas and tables; `manushya migrate` connects as it.
#   manushya_app  what the services connect as; it owns nothing, so row-level
#                 security applies to every query it makes.
# It also sizes shared_buffers so the HNSW index and vectors stay in memory.
set -euo pipefail
PSQL=(psql -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" -U "${PGSUPERUSER:-postgres}" -v ON_ERROR_STOP=1 -qAt)
DB="${MANUSHYA_DB_NAME:-manushya}"

"${PSQL[@]}" -d postgres <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'manushya') THEN
    CREATE ROLE manushya LOGIN PASSWORD 'manushya';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'manushya_app') THEN
    CREATE ROLE manushya_app LOGIN PASSWORD 'manushya_app' NOSUPERUSER NOBYPASSRLS;
  END IF;
END
\$\$;
SQL
if [ "$("${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE \"$DB\" OWNER manushya"
fi
# Same statements as postgres.SuperuserSetupSQL: pgvector, and LEAKPROOF operators so
# GIN indexes serve keyword search and metadata filters under row-level security.
"${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS vector"
"${PSQL[@]}" -d "$DB" -c "ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF"
"${PSQL[@]}" -d "$DB" -c "ALTER FUNCTION pg_catalog.jsonb_contains(jsonb, jsonb) LEAKPROOF"
"${PSQL[@]}" -d "$DB" -c "GRANT CONNECT, TEMPORARY ON DATABASE \"$DB\" TO manushya_app"

# The default 128MB of shared_buffers cannot hold a 100k x 384-d HNSW index.
sb_mb="$("${PSQL[@]}" -d postgres -c "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")"
if [ "$sb_mb" -lt 1024 ] && [ "${MANUSHYA_SKIP_PG_TUNING:-}" = "" ]; then
  echo "[provision-db] raising shared_buffers from ${sb_mb}MB to 1GB (restarts PostgreSQL)"
  "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET shared_buffers = '1GB'"
  "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET max_connections = 300"
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
fi
