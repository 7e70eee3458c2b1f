"""Request and error counts per time bucket, for the service's own error rate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('request_counts',
    sa.Column('bucket_start', sa.DateTime(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket_start', 'source')
    )


def downgrade():
    op.drop_table('request_counts')
