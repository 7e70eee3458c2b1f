"""Heartbeat ingest: from a ping or a JSON heartbeat to a stored, durable row (SPEC §3, §6.6).

    signals.py    what a heartbeat is as received, and how a ping URL says it
    fast_path.py  bodyless pings answered in front of Flask (WSGI middleware)
    slug_routes.py  which application a slug ping URL names, remembered per process
    writer.py     the per-process writer: group commit, or the spool when the database is away
    pg_store.py   the writer's PostgreSQL path: a batch in one or two round trips
    orm_store.py  the general path (ORM): incidents open and resolve here
    replay.py     the spool replayed in order once the database is back
"""
