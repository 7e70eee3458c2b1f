"""The alert claim reads pending alerts in (next_attempt_at, id) order: index that order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_state_next_attempt')
        batch_op.create_index('ix_alerts_state_next_attempt', ['state', 'next_attempt_at', 'id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_state_next_attempt')
        batch_op.create_index('ix_alerts_state_next_attempt', ['state', 'next_attempt_at'],
                              unique=False)
