"""gunicorn settings for production (`gunicorn -c gunicorn.conf.py -w N 'app:create_app()'`).

Workers are gevent workers: each connection is a greenlet, so a client that sends its request
slowly (or stops half-way through its body) holds a socket and a little memory, not one of a
few threads; 200 such connections do not stop pings (BENCHMARKS.md, slow clients). Database
calls yield to other greenlets through psycopg2's wait callback (database.install_io_timeout
selects on the socket, which gevent makes cooperative), and the app's own threads (heartbeat
writer, monitor, delivery) become greenlets.

Requests gunicorn refuses itself (bad request line, over-long URI, conflicting framing
headers) are answered with the JSON error envelope (server_errors.py).

prometheus_client keeps counters in files under PROMETHEUS_MULTIPROC_DIR when that variable is
set before it is first imported, which happens in each worker after the fork. The directory is
emptied when the master starts (stale files would add old counts) and a dead worker's live
gauges are dropped when it exits.
"""
import os
import shutil

import server_errors
from config import INSTANCE_DIR, Settings

_settings = Settings.load()
multiprocess_dir = _settings.PROMETHEUS_MULTIPROC_DIR or str(INSTANCE_DIR / "prometheus")

worker_class = "gevent"
worker_connections = 1000  # connections one worker holds open at once


def on_starting(server):
    shutil.rmtree(multiprocess_dir, ignore_errors=True)
    os.makedirs(multiprocess_dir, exist_ok=True)
    # Inherited by the workers, read by prometheus_client and by config.Settings there.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid, multiprocess_dir)


def post_fork(server, worker):
    server_errors.install()
