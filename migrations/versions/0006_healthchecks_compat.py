"""Coming from Healthchecks: slugs, its check options, ping counts, channel UUIDs, ping keys.

- applications: `slug` (optional, unique), `manual_resume`, `methods`, and `n_pings`: every
  heartbeat ever stored, counted by a trigger on inserts into heartbeats (below), so that every
  path that writes heartbeats counts them, in the same transaction, with no code of its own;
  existing applications start from the heartbeats they still have (a later migration that
  rebuilds heartbeats on SQLite, batch "move and copy", must create the trigger again);
- heartbeats: `method` (the ping's HTTP method);
- channels: `uuid`, how the Healthchecks API names a channel;
- ping_keys: keys for slug ping URLs, stored hashed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00.000000

"""
import uuid

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# PostgreSQL: one UPDATE per INSERT statement (a heartbeat batch is one statement), from the
# statement's new rows; SQLite has row triggers only (and a single writer).
POSTGRESQL_COUNT_PINGS = """
CREATE FUNCTION hbmon_count_pings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE applications AS a SET n_pings = a.n_pings + counted.pings
    FROM (SELECT application_id, count(*) AS pings FROM inserted_heartbeats
          GROUP BY application_id) AS counted
    WHERE a.id = counted.application_id;
    RETURN NULL;
END $$;
CREATE TRIGGER heartbeats_count_pings AFTER INSERT ON heartbeats
    REFERENCING NEW TABLE AS inserted_heartbeats
    FOR EACH STATEMENT EXECUTE FUNCTION hbmon_count_pings();
"""
SQLITE_COUNT_PINGS = """
CREATE TRIGGER heartbeats_count_pings AFTER INSERT ON heartbeats
BEGIN
    UPDATE applications SET n_pings = n_pings + 1 WHERE id = NEW.application_id;
END
"""


def upgrade():
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slug', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('manual_resume', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('methods', sa.String(length=8), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('n_pings', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_unique_constraint('uq_applications_slug', ['slug'])
    with op.batch_alter_table('heartbeats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=8), nullable=True))

    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uuid', sa.String(length=36), nullable=True))
    connection = op.get_bind()
    channels = sa.table('channels', sa.column('id', sa.Integer), sa.column('uuid', sa.String))
    for (channel_id,) in connection.execute(sa.select(channels.c.id)).fetchall():
        connection.execute(channels.update().where(channels.c.id == channel_id)
                           .values(uuid=str(uuid.uuid4())))
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.alter_column('uuid', existing_type=sa.String(length=36), nullable=False)
        batch_op.create_unique_constraint('uq_channels_uuid', ['uuid'])

    op.create_table('ping_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash'),
    sa.UniqueConstraint('prefix')
    )

    op.execute("UPDATE applications SET n_pings = (SELECT count(*) FROM heartbeats "
               "WHERE heartbeats.application_id = applications.id)")
    if connection.dialect.name == 'postgresql':
        op.execute(POSTGRESQL_COUNT_PINGS)
    else:
        op.execute(SQLITE_COUNT_PINGS)


def downgrade():
    connection = op.get_bind()
    op.execute("DROP TRIGGER heartbeats_count_pings"
               + (" ON heartbeats" if connection.dialect.name == 'postgresql' else ""))
    if connection.dialect.name == 'postgresql':
        op.execute("DROP FUNCTION hbmon_count_pings()")
    op.drop_table('ping_keys')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_constraint('uq_channels_uuid', type_='unique')
        batch_op.drop_column('uuid')
    with op.batch_alter_table('heartbeats', schema=None) as batch_op:
        batch_op.drop_column('method')
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_constraint('uq_applications_slug', type_='unique')
        batch_op.drop_column('n_pings')
        batch_op.drop_column('methods')
        batch_op.drop_column('manual_resume')
        batch_op.drop_column('slug')
