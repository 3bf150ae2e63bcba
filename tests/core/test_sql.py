"""core/sql.py: statements compiled once and run on the request's asyncpg connection.

What must hold: a plain read sends no transaction of its own; anything run "in the
transaction" is in the session's transaction (rolled back with it); values and errors
are what they would be through the session; objects made from rows behave as loaded.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import Table, Text, bindparam, event, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.core.database import Database
from coursehub.core.sql import (
    DriverStatement,
    RowView,
    ViewStatement,
    as_loaded,
    driver_connection,
)
from coursehub.models import Course, Role, User
from tests.factories import make_course, make_user

USERS = cast(Table, User.__table__)

SELECT_ONE_USER = DriverStatement(
    select(USERS.c.id, USERS.c.email).where(USERS.c.id == bindparam("user_id", type_=Text()))
)
INSERT_USER = DriverStatement(
    insert(USERS).values(
        id=bindparam("id"),
        email=bindparam("email"),
        username=bindparam("username"),
        password=bindparam("password"),
        role=bindparam("role"),
        createdAt=bindparam("now"),
        updatedAt=bindparam("now"),
    )
)
# A Decimal and an aware datetime, handed back by PostgreSQL as it received them.
ECHO = DriverStatement(
    select(
        bindparam("price", type_=Course.price.type),
        bindparam("at", type_=Course.created_at.type),
    )
)


class UserLine(RowView):
    __slots__ = ()

    id: str
    email: str
    shout: str

    @property
    def domain(self) -> str:  # not a column: a view's own property
        return self.email.rpartition("@")[2]


USER_LINES = ViewStatement(
    select(USERS.c.id, USERS.c.email, func.upper(USERS.c.username).label("shout"))
    .where(USERS.c.id.like(bindparam("prefix", type_=Text()) + "%"))
    .order_by(USERS.c.id),
    UserLine,
)


def _user_values(n: int) -> dict[str, Any]:
    return {
        "id": f"sql-user-{n}",
        "email": f"sql{n}@example.com",
        "username": f"sql{n}",
        "password": "x",
        "role": Role.user,
        "now": datetime.now(UTC),
    }


async def test_a_read_sends_no_begin_and_leaves_no_transaction(committed_db: Database) -> None:
    sent: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(committed_db.engine.sync_engine, "before_cursor_execute", log)
    try:
        async with committed_db.sessionmaker() as session:
            assert await SELECT_ONE_USER.fetchrow(session, user_id="nobody") is None
            driver = await driver_connection(session)
            assert not driver.is_in_transaction()
            await session.commit()
    finally:
        event.remove(committed_db.engine.sync_engine, "before_cursor_execute", log)
    # Listeners see the statement, as they see the session's own.
    assert sent == [SELECT_ONE_USER.sql]


async def test_in_transaction_statements_begin_it_and_roll_back_with_it(
    committed_db: Database,
) -> None:
    async with committed_db.sessionmaker() as session:
        # Nothing has begun the transaction yet: this goes through SQLAlchemy, which does.
        await INSERT_USER.fetch_in_transaction(session, **_user_values(1))
        driver = await driver_connection(session)
        assert driver.is_in_transaction()
        # Now on the driver, inside the same transaction.
        await INSERT_USER.fetch_in_transaction(session, **_user_values(2))
        assert await SELECT_ONE_USER.fetchrow(session, user_id="sql-user-2") is not None
        await session.rollback()
    async with committed_db.sessionmaker() as session:
        count = select(func.count()).select_from(USERS)
        assert (await session.execute(count)).scalar_one() == 0


async def test_in_transaction_statements_commit_with_the_session(committed_db: Database) -> None:
    async with committed_db.transaction() as session:
        await make_user(session)  # the session's own write begins the transaction
        await INSERT_USER.fetch_in_transaction(session, **_user_values(3))
    async with committed_db.sessionmaker() as session:
        row = await SELECT_ONE_USER.fetchrow(session, user_id="sql-user-3")
        assert row is not None and row[1] == "sql3@example.com"


async def test_integrity_errors_are_sqlalchemys_naming_the_constraint(
    session: AsyncSession,
) -> None:
    await INSERT_USER.fetch_in_transaction(session, **_user_values(4))
    duplicate = {**_user_values(5), "email": "sql4@example.com"}
    with pytest.raises(IntegrityError) as raised:
        async with session.begin_nested():
            await INSERT_USER.fetch_in_transaction(session, **duplicate)
    assert getattr(raised.value.orig, "constraint_name", None) == "User_email_key"


async def test_values_go_through_the_column_types(session: AsyncSession) -> None:
    at = datetime(2026, 3, 1, 17, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    row = await ECHO.fetchrow(session, price=Decimal("10.01"), at=at)
    assert row is not None
    price, stored = row[0], row[1]
    assert isinstance(price, Decimal) and price == Decimal("10.01")  # never a float
    # UTCDateTime: naive UTC, cut to the millisecond, as stored.
    assert stored == datetime(2026, 3, 1, 12, 0, 0, 123000)


def test_a_missing_parameter_is_an_error() -> None:
    with pytest.raises(KeyError):
        SELECT_ONE_USER.arguments({})


async def test_objects_from_rows_are_the_sessions(session: AsyncSession) -> None:
    course = await make_course(session, title="Held course")
    await session.commit()
    course_id = course.id
    session.expire(course)
    # The session's own object, its expired attributes filled from the row.
    same = as_loaded(session, Course, id=course_id, title="From the row", price=Decimal(1))
    assert same is course
    assert course.title == "From the row"

    user = as_loaded(
        session,
        User,
        id="sql-user-6",
        email="sql6@example.com",
        username="sql6",
        password="x",
        role=Role.user,
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    assert user in session and user not in session.new  # persistent: never INSERTed
    held = await make_user(session)
    fresh = as_loaded(
        session,
        User,
        id=held.id,
        email="other@example.com",
        username=held.username,
        password="x",
        role=Role.user,
        created_at=held.created_at,
        updated_at=held.updated_at,
    )
    assert fresh is held and held.email != "other@example.com"  # loaded: not overwritten
    held.role = Role.admin  # a change to a session's object is flushed as an UPDATE
    session.expunge(user)  # (its row does not exist)
    await session.flush()
    role = await session.scalar(select(User.role).where(User.id == held.id))
    assert role is Role.admin


def test_objects_made_first_thing_in_a_process_are_usable() -> None:
    """A process whose first ORM work is `loaded_object` (a fresh worker's first sign-up,
    a CLI command): the mappers are configured by it, as the constructor would."""
    script = (
        "from coursehub.users import repository\n"
        "from coursehub.users.models import User\n"
        "assert not User.__mapper__.configured\n"
        "from coursehub.core.sql import loaded_object\n"
        "user = loaded_object(User, id='u1', email='e@example.com')\n"
        "print(user.id, user.email)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["u1", "e@example.com"]


async def test_a_view_statements_rows_read_their_columns_as_attributes(
    session: AsyncSession,
) -> None:
    for n in (6, 7):
        await INSERT_USER.fetch_in_transaction(session, **_user_values(n))

    rows = await USER_LINES.fetch(session, prefix="sql-user-")

    assert [type(row) for row in rows] == [UserLine, UserLine]
    assert [(row.id, row.email, row.shout) for row in rows] == [
        ("sql-user-6", "sql6@example.com", "SQL6"),
        ("sql-user-7", "sql7@example.com", "SQL7"),
    ]
    assert rows[0].domain == "example.com"
    # Still a Record: by position and by the column's name as well.
    assert rows[1][0] == "sql-user-7" and rows[1]["shout"] == "SQL7"
    assert await USER_LINES.fetchrow(session, prefix="nobody") is None


def test_a_view_statement_must_select_the_views_columns_in_order() -> None:
    with pytest.raises(ValueError, match="UserLine"):
        ViewStatement(
            select(USERS.c.email, USERS.c.id, func.upper(USERS.c.username).label("shout")),
            UserLine,
        )
    with pytest.raises(ValueError, match="UserLine"):
        ViewStatement(select(USERS.c.id, USERS.c.email), UserLine)


def test_a_view_is_not_subclassed() -> None:
    """Its columns are positions in its own statement: a subclass's would shift them."""
    with pytest.raises(TypeError, match="own class"):

        class MoreUserLine(UserLine):
            __slots__ = ()

            extra: int
