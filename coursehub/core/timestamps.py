"""Dates and date-times as the API accepts them: within a sane range of years.

Python's `datetime` ends at 9999-12-31 and starts at 0001-01-01, so a value at either
end overflows (an `OverflowError`, a 500) as soon as the store does arithmetic on it:
a date range's end is its day + 1, the sales report's default start is its end − 30
days, and the database binding converts an offset time to UTC. Every date or
date-time the API takes is therefore bounded on input, with a 422:

- not before 1970: nothing in the store (orders, coupons, reports) predates the Unix
  epoch, and PostgreSQL and every client agree on time from there on;
- not after 9000: far beyond any real coupon or report, and a thousand years short of
  `datetime.max`, so that no computed bound (days, months, a time-zone shift) can
  reach it.

The years are checked as written: with them inside the range, converting an offset
time to UTC (at most a day's shift) cannot overflow either.

Only ISO 8601 text is a date: pydantic would also take a number, or a string of digits,
as Unix time, so that `to=20261125` (a date written without dashes) silently meant
1970-08-23 and `to=0.5` half a second after the epoch. Those are 422s.

The store keeps times to the millisecond (Prisma's `timestamp(3)`), so a finer time is
brought to milliseconds on input, not by the database binding afterwards: a time to be
stored (a coupon's window) is truncated, as the binding would, so its checks (the start
before the end) and the answer see what is stored; a bound of a range filter is rounded
up, which selects exactly the rows the finer bound would, since every stored time is a
whole millisecond (`t >= 10:00:00.0004` is `t >= 10:00:00.001`, and `t < 10:00:00.0008`
is `t < 10:00:00.001`).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

MIN_YEAR = 1970
MAX_YEAR = 9000

_When = TypeVar("_When", date, datetime)


def check_year_range(value: _When) -> _When:
    """`value` itself if its year is within [MIN_YEAR, MAX_YEAR]; else a ValueError, which
    pydantic reports as a validation error (a 422 `validation_failed` in the API)."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


def to_stored_precision(value: datetime) -> datetime:
    """`value` truncated to the millisecond, as the database keeps it."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def up_to_stored_precision(value: datetime) -> datetime:
    """`value` rounded up to the next whole millisecond (itself when it is one)."""
    finer = value.microsecond % 1000
    return value + timedelta(microseconds=1000 - finer) if finer else value


_RANGE = f"Years {MIN_YEAR} to {MAX_YEAR}."
_ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def require_iso_8601(value: Any) -> Any:
    """Text must start as an ISO 8601 date does (`YYYY-MM-DD`); numbers are refused. Dates
    and datetimes (from Python callers) pass as they are."""
    if isinstance(value, date):
        return value
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        if _ISO_DATE_START.match(text):
            return value
    raise ValueError("must be an ISO 8601 date (YYYY-MM-DD) or date-time, not Unix time")


_ISO = BeforeValidator(require_iso_8601)

# An ISO 8601 date-time with an offset (`2026-11-25T10:00:00+05:30`, `…Z`), to be stored:
# truncated to the millisecond.
ApiDateTime = Annotated[
    AwareDatetime,
    _ISO,
    AfterValidator(check_year_range),
    AfterValidator(to_stored_precision),
    Field(description=f"With an offset; kept to the millisecond. {_RANGE}"),
]

# An ISO 8601 date-time, with or without an offset: a range filter's bound, where the
# caller takes a naive one to be UTC; rounded up to the millisecond.
ApiDateTimeOrNaive = Annotated[
    datetime,
    _ISO,
    AfterValidator(check_year_range),
    AfterValidator(up_to_stored_precision),
    Field(description=f"Naive means UTC. {_RANGE}"),
]

# An ISO 8601 date (`2026-11-25`).
ApiDate = Annotated[date, _ISO, AfterValidator(check_year_range), Field(description=_RANGE)]
