"""Status history: every change of an application's status, written by the database itself.

Two triggers on `applications` insert a row into `status_changes` whenever an application is
created and whenever its status changes, at its `updated_at` (every path that changes a status
sets it to the clock's time of the change): the one-statement ping write, the ORM's heartbeat
rules, the monitor's judging, pause and resume by either API or the console, the import. No
path can forget it and the ping path gains no round trip.

Each application's current status at its `updated_at` is recorded once: the history starts
there (earlier periods are not known).

On SQLite a later migration that rebuilds `applications` (batch "move and copy") must create
these triggers again, as 0012's.

Revision ID: 0013_status_changes
Revises: 0012_ping_route_version
Create Date: 2026-12-07 10:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_status_changes'
down_revision = '0012_ping_route_version'
branch_labels = None
depends_on = None

RECORD = ("INSERT INTO status_changes (application_id, status, changed_at) "
          "VALUES (NEW.id, NEW.status, NEW.updated_at);")
POSTGRESQL_TRIGGERS = f"""
CREATE FUNCTION hbmon_record_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {RECORD}
    RETURN NULL;
END $$;
CREATE TRIGGER applications_status_created AFTER INSERT ON applications
    FOR EACH ROW EXECUTE FUNCTION hbmon_record_status_change();
CREATE TRIGGER applications_status_changed AFTER UPDATE OF status ON applications
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION hbmon_record_status_change();
"""
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER applications_status_created AFTER INSERT ON applications "
    f"BEGIN {RECORD} END",
    f"CREATE TRIGGER applications_status_changed AFTER UPDATE OF status ON applications "
    f"WHEN OLD.status IS NOT NEW.status BEGIN {RECORD} END",
]


def upgrade():
    op.create_table('status_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_status_changes_application_changed', 'status_changes',
                    ['application_id', 'changed_at', 'id'], unique=False)
    op.execute("INSERT INTO status_changes (application_id, status, changed_at) "
               "SELECT id, status, updated_at FROM applications")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRESQL_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER applications_status_created ON applications")
        op.execute("DROP TRIGGER applications_status_changed ON applications")
        op.execute("DROP FUNCTION hbmon_record_status_change()")
    else:
        op.execute("DROP TRIGGER applications_status_created")
        op.execute("DROP TRIGGER applications_status_changed")
    op.drop_index('ix_status_changes_application_changed', table_name='status_changes')
    op.drop_table('status_changes')
