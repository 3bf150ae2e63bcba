"""Log records written by a thread of their own, never by the event loop.

A log handler writes synchronously: to a file, a pipe to a log collector, a terminal. Any
of these can block for a while (a disk flushing, a reader falling behind), and a write
made inside the event loop stalls every request the process is serving. uvicorn writes an
access-log line per request that way: measured under wrk with two workers logging to a
file (docs/BENCHMARKS.md), p99 was 0.9 s with the access log and 21 ms without it.

`logs_written_in_background()` moves the handlers of the loggers the server uses behind
one queue: the loop only enqueues a record (no I/O, no lock), and one thread takes the
records in order and hands each to the handlers its logger had, as they would have
handled it. Records are not formatted before they are queued (unlike the standard
library's `QueueHandler`): the handlers' own formatters need the record as logged (uvicorn's
access formatter reads `record.args`), and a record only crosses threads, never
processes. So log immutable arguments, as the code does.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# The loggers uvicorn and the store write through ("" is the root logger).
SERVER_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "coursehub")

_Item = tuple[tuple[logging.Handler, ...], logging.LogRecord] | None


class _Enqueue(logging.Handler):
    """Stands in for one logger's handlers: queues each record with them."""

    def __init__(self, records: queue.SimpleQueue[_Item], handlers: Sequence[logging.Handler]):
        super().__init__()
        self._records = records
        self._handlers = tuple(handlers)

    def emit(self, record: logging.LogRecord) -> None:
        self._records.put((self._handlers, record))


def _write(records: queue.SimpleQueue[_Item]) -> None:
    while (item := records.get()) is not None:
        handlers, record = item
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)  # the handler's filters, lock and error handling


@contextmanager
def logs_written_in_background(names: Sequence[str] = SERVER_LOGGERS) -> Iterator[None]:
    """While inside, the named loggers' handlers are written to by a background thread.
    On the way out every queued record is written, and the handlers are put back."""
    moved = {name: list(logging.getLogger(name).handlers) for name in names}
    moved = {name: handlers for name, handlers in moved.items() if handlers}
    if not moved:
        yield
        return
    records: queue.SimpleQueue[_Item] = queue.SimpleQueue()
    writer = threading.Thread(
        target=_write, args=(records,), name="coursehub-log-writer", daemon=True
    )
    writer.start()
    for name, handlers in moved.items():
        logger = logging.getLogger(name)
        for handler in handlers:
            logger.removeHandler(handler)
        logger.addHandler(_Enqueue(records, handlers))
    try:
        yield
    finally:
        for name, handlers in moved.items():
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if isinstance(handler, _Enqueue):
                    logger.removeHandler(handler)
            for handler in handlers:
                logger.addHandler(handler)
        records.put(None)
        writer.join()
