"""gunicorn settings: Prometheus metrics shared by all workers (`gunicorn -c gunicorn.conf.py`).

prometheus_client keeps counters in files under PROMETHEUS_MULTIPROC_DIR when that variable is
set before it is first imported, which happens in each worker after the fork. The directory is
emptied when the master starts (stale files would add old counts) and a dead worker's live
gauges are dropped when it exits.
"""
import os
import shutil

from config import INSTANCE_DIR, Settings

_settings = Settings.load()
multiprocess_dir = _settings.PROMETHEUS_MULTIPROC_DIR or str(INSTANCE_DIR / "prometheus")


def on_starting(server):
    shutil.rmtree(multiprocess_dir, ignore_errors=True)
    os.makedirs(multiprocess_dir, exist_ok=True)
    # Inherited by the workers, read by prometheus_client and by config.Settings there.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid, multiprocess_dir)
