"""Order numbers: `CH-<UTC date>-<6 random characters>`, e.g. `CH-20261125-7K3QX9`.

Readable on the phone (no 0/O, 1/I/L), sortable by day, and not guessable from the
previous one: the suffix is 30 bits from `secrets`, so knowing one order's number
says nothing about another's. Collisions within a day are rare but possible, so
checkout retries with a new number (see `repository.insert_order`).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols
SUFFIX_LENGTH = 6
PATTERN = re.compile(rf"^CH-\d{{8}}-[{ALPHABET}]{{{SUFFIX_LENGTH}}}$")


def new_order_number(now: datetime) -> str:
    suffix = "".join(secrets.choice(ALPHABET) for _ in range(SUFFIX_LENGTH))
    return f"CH-{now:%Y%m%d}-{suffix}"
