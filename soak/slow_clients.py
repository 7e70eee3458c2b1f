"""Slow clients on raw sockets: bodies dribbled a few bytes at a time, finished or cut off."""
from __future__ import annotations

import json
import socket
import threading
import time

from soak.load import NOT_AN_ENVELOPE, LoadGenerator, Sent, SoakApplication

COMPLETE_BODY = b"slow but complete: " + b"x" * 41  # 60 bytes
CUT_OFF_DECLARED_BYTES = 1000


def dribble(load: LoadGenerator, host: str, port: int, application: SoakApplication,
            seconds: float, complete: bool) -> Sent:
    """POST a ping body over `seconds`; a cut-off client declares 1000 bytes, sends a few and
    hangs up (nothing may be stored), a complete one sends all 60 and reads the answer."""
    token = load.new_token()
    path, kind = (f"/ping/{application.uuid}", "ok") if complete \
        else (f"/ping/{application.uuid}/log", "log")
    form = "slow complete body" if complete else "cut-off body"
    sent = Sent(token, application.uuid, application.behaviour, form, kind, load.now(),
                cut_off=not complete)
    body = COMPLETE_BODY if complete else b"partial output" * 3
    declared = len(body) if complete else CUT_OFF_DECLARED_BYTES
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {token}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {declared}\r\n"
            "Connection: close\r\n\r\n").encode()
    pieces = [body[i:i + 6] for i in range(0, len(body), 6)]
    interval = seconds / len(pieces)
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=15) as connection:
            connection.sendall(head)
            for piece in pieces:
                if load.stopping.wait(interval):
                    break
                connection.sendall(piece)
            if complete:
                _read_answer(connection, sent)
            else:
                connection.shutdown(socket.SHUT_RDWR)
    except OSError as error:
        sent.error = type(error).__name__
    sent.seconds = time.monotonic() - started
    return load.record(sent)


def _read_answer(connection: socket.socket, sent: Sent) -> None:
    """Status, Retry-After and error code of the answer (the server closes after it)."""
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return
    sent.status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
    sent.retry_after = headers.get("retry-after")
    if sent.status >= 400:
        try:
            sent.code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            sent.code = NOT_AN_ENVELOPE


def slow_clients(load: LoadGenerator, host: str, port: int,
                 applications: list[SoakApplication], count: int, seconds: float) -> list[Sent]:
    """`count` slow clients at once, alternately complete and cut off; waits for them all."""
    results: list[Sent] = []
    threads = [threading.Thread(target=lambda n=n: results.append(dribble(
        load, host, port, applications[n % len(applications)], seconds, complete=n % 2 == 0)),
        daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return results
