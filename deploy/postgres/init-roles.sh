#!/bin/sh
# Runs once, when the postgres service initialises an empty volume: creates the migration role
# (owner of the gatekey database and its schema) and the service's least-privilege role, with
# the passwords of the URLs in deploy/staging.env.
set -eu

password_of() {  # postgresql+asyncpg://user:password@host:port/db -> password
    printf '%s' "$1" | sed -E 's#^[^:]+://[^:]+:([^@]*)@.*$#\1#'
}
migrate_password=$(password_of "$DATABASE_URL")
app_password=$(password_of "$GATEKEY_APP_DATABASE_URL")

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v migrate_password="$migrate_password" -v app_password="$app_password" <<'SQL'
-- Migrations: owns the database (so `gatekey db upgrade` may create what it needs) and may
-- create databases, as the integration suite and the self-test's migration check do.
CREATE ROLE gatekey_migrate LOGIN CREATEDB PASSWORD :'migrate_password';
ALTER DATABASE gatekey OWNER TO gatekey_migrate;
ALTER SCHEMA public OWNER TO gatekey_migrate;

-- The service: connects, reads and writes rows, uses sequences; no DDL, no other database.
CREATE ROLE gatekey_app LOGIN PASSWORD :'app_password';
REVOKE ALL ON DATABASE gatekey FROM PUBLIC;
GRANT CONNECT ON DATABASE gatekey TO gatekey_app;
-- The maintenance database: the migration role creates databases from it, the service never.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
GRANT CONNECT ON DATABASE postgres TO gatekey_migrate;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO gatekey_app;
-- Tables the migration role creates later are granted to the service as they appear.
ALTER DEFAULT PRIVILEGES FOR ROLE gatekey_migrate IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gatekey_app;
ALTER DEFAULT PRIVILEGES FOR ROLE gatekey_migrate IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO gatekey_app;
SQL
