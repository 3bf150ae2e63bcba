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
"""

from __future__ import annotations

import re
from datetime import date, datetime
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

# An ISO 8601 date-time with an offset (`2026-11-25T10:00:00+05:30`, `…Z`).
ApiDateTime = Annotated[
    AwareDatetime,
    _ISO,
    AfterValidator(check_year_range),
    Field(description=f"With an offset. {_RANGE}"),
]

# An ISO 8601 date-time, with or without an offset: for filters, where the caller takes a
# naive one to be UTC.
ApiDateTimeOrNaive = Annotated[
    datetime,
    _ISO,
    AfterValidator(check_year_range),
    Field(description=f"Naive means UTC. {_RANGE}"),
]

# An ISO 8601 date (`2026-11-25`).
ApiDate = Annotated[date, _ISO, AfterValidator(check_year_range), Field(description=_RANGE)]
