"""Every PostgreSQL advisory lock key the store takes, in one place, so no two uses collide.

PostgreSQL keeps the one-bigint and the two-int forms of advisory locks in separate key
spaces. Single keys are ASCII words read as big-endian integers; two-int locks use a
class number (first int) and a hash of the locked thing (second int). Transaction-scoped
locks (`pg_advisory_xact_lock`) are released by the commit or rollback, never by hand.
"""

from __future__ import annotations

# Single-key locks.
MIGRATION_LOCK_KEY = 0x636F757273656875  # "coursehu": one migrate or downgrade at a time (session)
ADMIN_SET_LOCK_KEY = 0x636861646D696E73  # "chadmins": changes to the set of admins

# Two-int locks: (class, hashtext(thing)).
CHECKOUT_LOCK_CLASS = 0x43480001  # one checkout at a time per buyer
COURSE_SLUG_LOCK_CLASS = 0x43480002  # one course creation at a time per base slug
# Claims of a limited coupon's uses: shared far from its limit, exclusive for its last uses
# and for admins' changes (coupons/repository.py).
COUPON_CLAIM_LOCK_CLASS = 0x43480003
# One `coursehub bench` run at a time per bench database name (session-level, taken on the
# server's `postgres` database for the run's length: bench/suite.py `exclusive_run`).
BENCH_RUN_LOCK_CLASS = 0x43480100
