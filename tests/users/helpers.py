"""What the account tests share: counting the statements a piece of code sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class StatementLog:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.parameters: list[Any] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        # Savepoints are the test harness's, not the code's.
        if "SAVEPOINT" not in statement.upper():
            self.statements.append(statement)
            self.parameters.append(parameters)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[StatementLog]:
    log = StatementLog()
    event.listen(engine.sync_engine, "before_cursor_execute", log)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", log)
