"""Delivery processes say they are alive; an alert claimed by one that stopped is free again.

A process that delivers alerts renews its row in `delivery_processes` every few seconds and
writes its id into the alerts it claims (`alerts.claimed_by`). Another process may claim an
alert whose owner has not been seen alive for 10 s, without waiting for the claim's lease.

Revision ID: 0009_delivery_liveness
Revises: 0008_incident_response
Create Date: 2026-12-07 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_delivery_liveness'
down_revision = '0008_incident_response'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'delivery_processes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('alive_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=36), nullable=True))


def downgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
    op.drop_table('delivery_processes')
