#!/bin/bash
# Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d):
# MLflow's backend store, a database of its own in docent's PostgreSQL, owned by a role
# of its own. The password comes from the environment (.env), never from this file.
# An existing volume is not touched: see docs/deploy.md to add the database by hand.
set -euo pipefail

: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set (see .env.example)}"
MLFLOW_DB_USER="${MLFLOW_DB_USER:-mlflow}"
MLFLOW_DB_NAME="${MLFLOW_DB_NAME:-mlflow}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v mlflow_user="$MLFLOW_DB_USER" \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" \
  -v mlflow_db="$MLFLOW_DB_NAME" <<'EOSQL'
-- docent's own database: pgvector (docent also creates it at start when it may).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE ROLE :"mlflow_user" LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE :"mlflow_db" OWNER :"mlflow_user";
REVOKE ALL ON DATABASE :"mlflow_db" FROM PUBLIC;
EOSQL
