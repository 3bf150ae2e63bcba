"""core/log_writer.py: while the server runs, a log record is written by a thread of its own,
so a sink that blocks (a stuck pipe, a slow disk) never stalls the event loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from coursehub.core.log_writer import logs_written_in_background


class BlockingSink(logging.Handler):
    """A sink that hangs until released, and notes which thread wrote each record."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.unblock = threading.Event()
        self.written: list[tuple[str, str]] = []  # (message, thread name)
        self.done = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.unblock.wait(timeout=30)
        self.written.append((self.format(record), threading.current_thread().name))
        self.done.set()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("coursehub.tests.log_writer")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_logging_returns_while_the_sink_is_stuck_and_the_record_is_written_later(
    logger: logging.Logger,
) -> None:
    sink = BlockingSink()
    logger.addHandler(sink)

    with logs_written_in_background([logger.name]):
        logger.info("order %s paid", "CH-1")  # returns at once though the sink hangs
        assert sink.written == []
        assert sink not in logger.handlers
        sink.unblock.set()
        assert sink.done.wait(timeout=30)

    assert sink.written == [("order CH-1 paid", "coursehub-log-writer")]
    assert sink in logger.handlers  # put back on the way out, with nothing of ours left
    assert [type(h).__name__ for h in logger.handlers if type(h).__name__ == "_Enqueue"] == []


def test_every_queued_record_is_written_in_order_on_the_way_out(logger: logging.Logger) -> None:
    sink = BlockingSink()
    logger.addHandler(sink)

    with logs_written_in_background([logger.name]):
        for n in range(5):
            logger.warning("record %d", n)
        sink.unblock.set()

    assert [message for message, _ in sink.written] == [f"record {n}" for n in range(5)]


def test_each_logger_keeps_its_own_handlers_and_their_levels(logger: logging.Logger) -> None:
    """uvicorn's access lines must not reach its error log's handler, nor the other way."""
    other = logging.getLogger("coursehub.tests.log_writer.other")
    other.propagate = False
    mine, theirs = BlockingSink(), BlockingSink(level=logging.WARNING)
    for sink in (mine, theirs):
        sink.unblock.set()
    logger.addHandler(mine)
    other.addHandler(theirs)
    try:
        with logs_written_in_background([logger.name, other.name]):
            logger.info("to mine")
            other.info("below their level")
            other.error("to theirs")
    finally:
        other.removeHandler(theirs)

    assert [message for message, _ in mine.written] == ["to mine"]
    assert [message for message, _ in theirs.written] == ["to theirs"]


def test_args_reach_the_sink_unformatted(logger: logging.Logger) -> None:
    """uvicorn's access formatter reads record.args: they must arrive as logged."""
    seen: list[object] = []

    class ArgsSink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.args)

    logger.addHandler(ArgsSink())
    with logs_written_in_background([logger.name]):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200)

    assert seen == [("127.0.0.1:5000", "GET", "/healthz", "1.1", 200)]
