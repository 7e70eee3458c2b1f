"""Incident response and noise control: acknowledgements, reminders, escalation, maintenance
windows, dependencies, run-duration limits.

Incidents already open when this runs were alerted under the old rules (alerted_at = their
start); one left open on an application that is no longer down (a pause used to leave it so) is
resolved at the application's last change.

Revision ID: 0008_incident_response
Revises: 0006
Create Date: 2026-12-02 00:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_incident_response'
down_revision = '0006'
branch_labels = None
depends_on = None

NEXT_CHECK = sa.text('next_check_at IS NOT NULL')
SUPPRESSED = sa.text('suppressed_by IS NOT NULL')


# SQLite rebuilds `applications` to alter it (batch "move and copy"); the heartbeat trigger of
# migration 0006 names that table, so it is set aside meanwhile (SQLite refuses the rename).
SQLITE_COUNT_PINGS = """
CREATE TRIGGER heartbeats_count_pings AFTER INSERT ON heartbeats
BEGIN
    UPDATE applications SET n_pings = n_pings + 1 WHERE id = NEW.application_id;
END
"""


def _set_aside_sqlite_trigger() -> bool:
    if op.get_bind().dialect.name != 'sqlite':
        return False
    op.execute("DROP TRIGGER IF EXISTS heartbeats_count_pings")
    return True


def upgrade():
    sqlite = _set_aside_sqlite_trigger()
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_duration_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_duration_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reminder_interval_seconds', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('escalation', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('depends_on_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_applications_depends_on_id', 'applications',
                                    ['depends_on_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_applications_depends_on_id', ['depends_on_id'], unique=False)

    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolution', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('alerted_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('in_maintenance', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('suppressed_by', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_by', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('acknowledgement_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('escalation_step', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('next_reminder_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('next_escalation_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('next_check_at', sa.DateTime(), nullable=True))
    op.create_index('ix_incidents_next_check_at', 'incidents', ['next_check_at', 'id'],
                    postgresql_where=NEXT_CHECK, sqlite_where=NEXT_CHECK)
    op.create_index('ix_incidents_suppressed_by', 'incidents', ['suppressed_by'],
                    postgresql_where=SUPPRESSED, sqlite_where=SUPPRESSED)
    op.execute("UPDATE incidents SET alerted_at = started_at, resolution = CASE WHEN "
               "resolved_at IS NULL THEN NULL ELSE 'recovered' END")
    op.execute(
        "UPDATE incidents SET resolution = 'paused', resolved_at = ("
        " SELECT updated_at FROM applications WHERE applications.id = incidents.application_id)"
        " WHERE resolved_at IS NULL AND application_id IN ("
        " SELECT id FROM applications WHERE status <> 'down')")

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_incident_id', ['incident_id'], unique=False)

    op.create_table('maintenance_windows',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=True),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('cron', sa.String(length=200), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('covers_all', sa.Boolean(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('skip_until', sa.DateTime(), nullable=True),
    sa.Column('occurrence_starts_at', sa.DateTime(), nullable=True),
    sa.Column('occurrence_ends_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_maintenance_windows_occurrence_ends_at', 'maintenance_windows',
                    ['occurrence_ends_at'], unique=False)
    op.create_table('maintenance_window_applications',
    sa.Column('window_id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['window_id'], ['maintenance_windows.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('window_id', 'application_id')
    )
    op.create_index('ix_maintenance_window_applications_application_id',
                    'maintenance_window_applications', ['application_id'], unique=False)
    if sqlite:
        op.execute(SQLITE_COUNT_PINGS)


def downgrade():
    sqlite = _set_aside_sqlite_trigger()
    op.drop_index('ix_maintenance_window_applications_application_id',
                  table_name='maintenance_window_applications')
    op.drop_table('maintenance_window_applications')
    op.drop_index('ix_maintenance_windows_occurrence_ends_at', table_name='maintenance_windows')
    op.drop_table('maintenance_windows')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_incident_id')
    op.drop_index('ix_incidents_suppressed_by', table_name='incidents')
    op.drop_index('ix_incidents_next_check_at', table_name='incidents')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        for name in ('next_check_at', 'next_escalation_at', 'next_reminder_at',
                     'escalation_step', 'acknowledgement_note', 'acknowledged_by',
                     'acknowledged_at', 'suppressed_by', 'in_maintenance', 'alerted_at',
                     'resolution'):
            batch_op.drop_column(name)
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index('ix_applications_depends_on_id')
        batch_op.drop_constraint('fk_applications_depends_on_id', type_='foreignkey')
        for name in ('depends_on_id', 'escalation', 'reminder_interval_seconds',
                     'max_duration_seconds', 'min_duration_seconds'):
            batch_op.drop_column(name)
    if sqlite:
        op.execute(SQLITE_COUNT_PINGS)
