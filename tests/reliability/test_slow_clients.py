"""Slow and idle clients against a real ``dirbridge serve`` (8 request threads): 200
connections that send their headers a byte at a time, and 200 that connect and say
nothing, must not stop the server answering ``/healthz`` (in under a second) or a
login. Before, 8 such connections (one per thread) stopped it. The figures go to the
report."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

from tests.fixtures.net import free_port
from tests.integration.test_daemon import get, start_serve
from tests.reliability.conftest import Report

SLOW = 200
IDLE = 200
PROBES = 20


def test_slow_and_idle_connections_do_not_stop_the_server(tmp_path: Path, report: Report):
    port = free_port()
    proc = start_serve(tmp_path, port, "workers = 8\n")
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def trickle() -> None:
        """Each slow connection sends one more header byte every 0.2 s, forever."""
        while not stop.is_set():
            for sock in list(sockets[:SLOW]):
                try:
                    sock.send(b"x")
                except OSError:
                    pass
            stop.wait(0.2)

    try:
        for n in range(SLOW + IDLE):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n < SLOW:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            sockets.append(sock)
        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        time.sleep(1.0)  # let every slow request be under way
        latencies, statuses = [], []
        for _ in range(PROBES):
            started = time.perf_counter()
            try:
                status, _ = get(port, "/healthz", timeout=5)
            except OSError:
                status = 0
            latencies.append(time.perf_counter() - started)
            statuses.append(status)
            time.sleep(0.05)
        still_open = 0
        for sock in sockets:
            try:
                sock.send(b"y")
                still_open += 1
            except OSError:
                pass
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
    report.add("slow_clients", slow=SLOW, idle=IDLE, probes=PROBES, answered=statuses.count(200),
               healthz_max_ms=round(max(latencies) * 1000, 1),
               healthz_median_ms=round(statistics.median(latencies) * 1000, 1), connections_kept=still_open)
    assert statuses == [200] * PROBES, statuses
    assert max(latencies) < 1.0, latencies


def test_a_request_that_does_not_arrive_in_time_is_disconnected(tmp_path: Path, report: Report):
    """A client trickling its headers holds its socket for ``server.request_timeout`` at
    most: then the server closes it, and its place is free again."""
    port = free_port()
    proc = start_serve(tmp_path, port, "workers = 4\nrequest_timeout = 2\nmax_connections = 60\n")
    sockets = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            sockets.append(sock)
        started = time.perf_counter()
        closed = 0
        for _ in range(40):  # keep trickling; count the sockets the server has closed
            closed = 0
            for sock in sockets:
                try:
                    sock.send(b"x")
                    sock.settimeout(0.001)
                    if sock.recv(1) == b"":
                        closed += 1
                except (BlockingIOError, TimeoutError):
                    pass
                except OSError:
                    closed += 1
            if closed == len(sockets):
                break
            time.sleep(0.25)
        took = time.perf_counter() - started
        status, _ = get(port, "/healthz", timeout=5)
    finally:
        for sock in sockets:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
    report.add("slow_clients", request_timeout_s=2, trickling=len(sockets), closed_by_server=closed,
               within_s=round(took, 1))
    assert closed == len(sockets) and took < 6, (closed, took)
    assert status == 200
