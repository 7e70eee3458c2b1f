"""At most one open incident per application, enforced by a partial unique index.

Applications that already have several open incidents keep the newest open; each older one is
resolved when the next one started.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

OPEN = sa.text('resolved_at IS NULL')


def upgrade():
    op.execute(
        "UPDATE incidents SET resolved_at = ("
        " SELECT MIN(later.started_at) FROM incidents AS later"
        " WHERE later.application_id = incidents.application_id"
        " AND later.resolved_at IS NULL AND later.id > incidents.id)"
        " WHERE resolved_at IS NULL AND EXISTS ("
        " SELECT 1 FROM incidents AS later"
        " WHERE later.application_id = incidents.application_id"
        " AND later.resolved_at IS NULL AND later.id > incidents.id)")
    op.create_index('uq_incidents_one_open_per_application', 'incidents', ['application_id'],
                    unique=True, postgresql_where=OPEN, sqlite_where=OPEN)


def downgrade():
    op.drop_index('uq_incidents_one_open_per_application', table_name='incidents')
