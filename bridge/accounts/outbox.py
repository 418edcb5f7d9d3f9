"""Mail that goes out after the answer: one worker thread per process does what the
request queued (sends a message, or makes one and sends it). A forgotten-password
request must answer as fast for an unknown address as for a known one, so neither its
link nor its mail can be made while the request waits.

The runtime builds the outbox on first use and stops it in ``Runtime.close``, which
waits a little for what is queued. A mail that cannot be sent is logged (its reason,
never its body, which holds a single-use link) and dropped: the user asks again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from bridge.accounts.mail import MailError, Message

log = logging.getLogger(__name__)

MAX_QUEUED = 1000  # past this, a flood of requests drops mails rather than memory


class Outbox:
    def __init__(self, send: Callable[[Message], None]):
        self._send = send
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def post(self, message: Message) -> None:
        """Queue ``message`` for sending; the worker starts with the first job."""
        self.later(lambda: self._send(message))

    def later(self, job: Callable[[], None]) -> None:
        """Queue ``job`` (which makes a mail and sends it, say) for the worker."""
        with self._lock:
            if self._closed:
                log.warning("mail dropped: the process is stopping")
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dirbridge-outbox", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("mail dropped: %d mails wait already", MAX_QUEUED)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except MailError as exc:
                log.warning("a queued mail was not sent: %s", exc)
            except Exception:  # the worker must outlive one bad mail
                log.exception("a queued mail failed")
            finally:
                self._queue.task_done()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop the worker."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued mail was handled (tests, and the CLI before it exits)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)
