"""Money: Decimal rupees, rounded half-up to the paisa. Never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import PlainSerializer, StringConstraints, WithJsonSchema

PAISA = Decimal("0.01")
ZERO = Decimal("0.00")
CURRENCY = "INR"

# An ISO 4217 code as clients send it ("inr", " INR"), as the store compares it: upper case.
# Orders adopted from the Node app may carry another currency, or INR in lower case.
Currency = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")
]


def to_paise(amount: Decimal) -> Decimal:
    """Round half-up to two decimals: 10.005 → 10.01, 10.004 → 10.00. Zero is unsigned:
    Decimal keeps the sign of "-0" (and of -0.004 rounded), which would show as "-0.00",
    a negative-looking price that PostgreSQL stores as 0."""
    rounded = amount.quantize(PAISA, rounding=ROUND_HALF_UP)
    return ZERO if rounded.is_zero() else rounded


# In API responses money is a string with exactly two decimals ("1499.00"), so no
# client parses it into a binary float by accident.
Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: str(to_paise(value)), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+\.\d{2}$", "examples": ["1499.00"]}),
]
