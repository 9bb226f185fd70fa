#!/usr/bin/env bash
# First start of a PostgreSQL container: the two roles the platform needs. The owner runs
# migrations and owns every table (CREATEDB for dedicated tenants); the runtime role can neither
# bypass RLS nor own anything. Passwords come from the container's environment.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres \
  -v owner_pw="$TENANCY_OWNER_PASSWORD" -v app_pw="$TENANCY_APP_PASSWORD" -v db="${TENANCY_CREATE_DATABASE:-}" <<'SQL'
CREATE ROLE tenancy_owner LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE tenancy_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT PASSWORD :'app_pw';
-- Dropping a dedicated database (purge, a move's clean-up) ends the app's connections to it.
GRANT pg_signal_backend TO tenancy_owner;
SELECT format('CREATE DATABASE %I OWNER tenancy_owner', :'db') WHERE :'db' <> '' \gexec
SQL
