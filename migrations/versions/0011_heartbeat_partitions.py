"""Heartbeats in daily partitions on PostgreSQL, so retention drops whole days.

PostgreSQL: `heartbeats` becomes a table partitioned by RANGE on `received_at`, one partition a
day (`heartbeats_pYYYYMMDD`, [midnight, next midnight) UTC) and a DEFAULT partition
(`heartbeats_default`) that takes any heartbeat whose day has no partition yet, so no insert
ever fails for want of one. A partitioned table's keys must include the partition key: the
primary key becomes (id, received_at) and the UUID's uniqueness (uuid, received_at), which
still makes a spool replay idempotent (a replayed heartbeat has its UUID and its time). The id
becomes a bigint: at 10,000 heartbeats a second an integer runs out in under three days.

The existing rows are copied: days of the last 400 days that hold heartbeats, and today and
the next PARTITION_DAYS_AHEAD days, get their partitions; older rows go to the default partition
(retention prunes it row by row). The copy does not count pings again: the trigger that
counts them (migration 0006) is created on the new table after it.

SQLite keeps its plain table (and the row-wise prune): nothing changes there.

Revision ID: 0011_heartbeat_partitions
Revises: 0009_delivery_liveness
Create Date: 2026-12-07 09:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011_heartbeat_partitions'
down_revision = '0009_delivery_liveness'
branch_labels = None
depends_on = None

# As heartbeat_partitions.DAYS_AHEAD: the monitor's housekeeping keeps them ahead from then on.
PARTITION_DAYS_AHEAD = 3
HISTORY_DAYS = 400

COLUMNS = ("id, uuid, application_id, kind, exit_code, message, duration_ms, metadata, rid, "
           "source, remote_addr, user_agent, received_at, method")

COUNT_PINGS_TRIGGER = """
CREATE TRIGGER heartbeats_count_pings AFTER INSERT ON heartbeats
    REFERENCING NEW TABLE AS inserted_heartbeats
    FOR EACH STATEMENT EXECUTE FUNCTION hbmon_count_pings();
"""

CREATE_PARTITIONED = """
CREATE TABLE heartbeats (
    id bigint NOT NULL DEFAULT nextval('heartbeats_id_seq'),
    uuid varchar(36) NOT NULL,
    application_id integer NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    kind varchar(8) NOT NULL,
    exit_code integer,
    message text NOT NULL,
    duration_ms integer,
    metadata json,
    rid varchar(36),
    source varchar(8) NOT NULL,
    remote_addr varchar(64),
    user_agent varchar(300),
    received_at timestamp without time zone NOT NULL,
    method varchar(8),
    CONSTRAINT heartbeats_pkey PRIMARY KEY (id, received_at),
    CONSTRAINT heartbeats_uuid_key UNIQUE (uuid, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX ix_heartbeats_application_received ON heartbeats (application_id, received_at, id);
CREATE TABLE heartbeats_default PARTITION OF heartbeats DEFAULT;
"""

# One partition per day: those the old rows need (within HISTORY_DAYS), today and the days ahead.
CREATE_DAILY_PARTITIONS = f"""
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN
        SELECT DISTINCT received_at::date FROM heartbeats_unpartitioned
        WHERE received_at >= (now() AT TIME ZONE 'UTC')::date - {HISTORY_DAYS}
        UNION
        SELECT generate_series((now() AT TIME ZONE 'UTC')::date,
                               (now() AT TIME ZONE 'UTC')::date + {PARTITION_DAYS_AHEAD},
                               interval '1 day')::date
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF heartbeats FOR VALUES FROM (%L) TO (%L)',
                       'heartbeats_p' || to_char(day, 'YYYYMMDD'), day, day + 1);
    END LOOP;
END $$;
"""


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("SET LOCAL statement_timeout = 0")  # the copy takes what it takes
    op.execute("DROP TRIGGER heartbeats_count_pings ON heartbeats")
    op.execute("ALTER TABLE heartbeats RENAME TO heartbeats_unpartitioned")
    # Index names are the schema's: the new table takes them.
    op.execute("ALTER TABLE heartbeats_unpartitioned DROP CONSTRAINT heartbeats_pkey, "
               "DROP CONSTRAINT heartbeats_uuid_key")
    op.execute("DROP INDEX ix_heartbeats_application_received")
    op.execute("ALTER SEQUENCE heartbeats_id_seq AS bigint")
    op.execute(CREATE_PARTITIONED)
    op.execute("ALTER SEQUENCE heartbeats_id_seq OWNED BY heartbeats.id")
    op.execute(CREATE_DAILY_PARTITIONS)
    op.execute(f"INSERT INTO heartbeats ({COLUMNS}) SELECT {COLUMNS} FROM heartbeats_unpartitioned")
    op.execute("DROP TABLE heartbeats_unpartitioned")
    op.execute(COUNT_PINGS_TRIGGER)
    op.execute("ANALYZE heartbeats")


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("SET LOCAL statement_timeout = 0")  # the copy takes what it takes
    op.execute("DROP TRIGGER heartbeats_count_pings ON heartbeats")
    op.execute("ALTER TABLE heartbeats RENAME TO heartbeats_partitioned")
    op.execute("ALTER SEQUENCE heartbeats_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE heartbeats_partitioned DROP CONSTRAINT heartbeats_pkey, "
               "DROP CONSTRAINT heartbeats_uuid_key")
    op.execute("DROP INDEX ix_heartbeats_application_received")
    op.execute("""
        CREATE TABLE heartbeats (
            id integer NOT NULL DEFAULT nextval('heartbeats_id_seq') PRIMARY KEY,
            uuid varchar(36) NOT NULL UNIQUE,
            application_id integer NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
            kind varchar(8) NOT NULL,
            exit_code integer,
            message text NOT NULL,
            duration_ms integer,
            metadata json,
            rid varchar(36),
            source varchar(8) NOT NULL,
            remote_addr varchar(64),
            user_agent varchar(300),
            received_at timestamp without time zone NOT NULL,
            method varchar(8))""")
    op.execute("CREATE INDEX ix_heartbeats_application_received "
               "ON heartbeats (application_id, received_at, id)")
    op.execute(f"INSERT INTO heartbeats ({COLUMNS}) SELECT {COLUMNS} FROM heartbeats_partitioned")
    op.execute("DROP TABLE heartbeats_partitioned")  # and its partitions
    op.execute("ALTER SEQUENCE heartbeats_id_seq AS integer OWNED BY heartbeats.id")
    op.execute(COUNT_PINGS_TRIGGER)
