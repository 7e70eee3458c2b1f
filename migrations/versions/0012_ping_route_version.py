"""Slug ping routes: a counter the database raises whenever a slug or a ping key changes.

A process remembers which application `/ping/<ping-key>/<slug>` names (ingest/slug_routes.py)
and forgets it all when this counter moves. Triggers raise it, so every path that changes a
slug (our API, Healthchecks' API, the import), deletes an application or revokes a ping key
moves it in the same transaction, with no code of its own. The counter is one row, written by
an upsert, so a table emptied by TRUNCATE starts it again (it then reads 0: a change too).

On SQLite a later migration that rebuilds `applications` or `ping_keys` (batch "move and copy")
must create their triggers again.

Revision ID: 0012_ping_route_version
Revises: 0011_heartbeat_partitions
Create Date: 2026-12-07 09:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_ping_route_version'
down_revision = '0011_heartbeat_partitions'
branch_labels = None
depends_on = None

POSTGRESQL_TRIGGERS = """
CREATE FUNCTION hbmon_ping_routes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ping_route_version (id, version) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET version = ping_route_version.version + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER applications_ping_routes AFTER UPDATE OF slug OR DELETE ON applications
    FOR EACH STATEMENT EXECUTE FUNCTION hbmon_ping_routes_changed();
CREATE TRIGGER ping_keys_ping_routes AFTER UPDATE OR DELETE ON ping_keys
    FOR EACH STATEMENT EXECUTE FUNCTION hbmon_ping_routes_changed();
"""
SQLITE_RAISE = ("INSERT OR REPLACE INTO ping_route_version (id, version) VALUES (1, "
                "COALESCE((SELECT version FROM ping_route_version WHERE id = 1), 0) + 1);")
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER applications_slug_ping_routes AFTER UPDATE OF slug ON applications "
    f"BEGIN {SQLITE_RAISE} END",
    f"CREATE TRIGGER applications_delete_ping_routes AFTER DELETE ON applications "
    f"WHEN OLD.slug IS NOT NULL BEGIN {SQLITE_RAISE} END",
    f"CREATE TRIGGER ping_keys_update_ping_routes AFTER UPDATE ON ping_keys "
    f"BEGIN {SQLITE_RAISE} END",
    f"CREATE TRIGGER ping_keys_delete_ping_routes AFTER DELETE ON ping_keys "
    f"BEGIN {SQLITE_RAISE} END",
]


def upgrade():
    op.create_table('ping_route_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRESQL_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER applications_ping_routes ON applications")
        op.execute("DROP TRIGGER ping_keys_ping_routes ON ping_keys")
        op.execute("DROP FUNCTION hbmon_ping_routes_changed()")
    else:
        for name in ("applications_slug_ping_routes", "applications_delete_ping_routes",
                     "ping_keys_update_ping_routes", "ping_keys_delete_ping_routes"):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('ping_route_version')
