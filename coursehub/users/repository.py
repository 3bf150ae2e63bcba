"""All SQL on users, their profiles and preferences.

Emails and usernames are compared case-insensitively (`lower(...)`, served by the
indexes of migration 0005): the store writes them lower-case, but rows carried over
from the Node app may be mixed-case.

The operations the benchmark times (`create_user`, `get_user_with_profile`,
`update_user_role`, `delete_user`, `insert_user_with_profile`) are one statement,
so one round trip, each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from asyncpg import Record
from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from coursehub.core.locks import ADMIN_SET_LOCK_KEY
from coursehub.core.models import new_id, utcnow
from coursehub.core.pagination import TimeKeyset
from coursehub.core.sql import (
    DriverStatement,
    Reader,
    Writer,
    as_loaded,
    attach_written,
    aware,
    loaded_object,
)

# Through coursehub.models, which imports every model: the mappers' relationships
# resolve even when a caller (a script, the benchmark) imports only this module.
from coursehub.models import (
    CourseEnrollment,
    Order,
    Role,
    User,
    UserPreference,
    UserProfile,
)


def _lower(column: Any) -> ColumnElement[str]:
    return func.lower(column)


# --- the data layer's basic operations ----------------------------------------------------
#
# These run as Core statements on the tables (no ORM statement layer, no RETURNING): every
# value is made here (ids and timestamps are the application's, as in Prisma), so the
# ORM objects handed back are built from what was sent and attached to the session as
# loaded, without a round trip to read them back.

USERS = cast(Table, User.__table__)
PROFILES = cast(Table, UserProfile.__table__)
PREFERENCES = cast(Table, UserPreference.__table__)
ENROLLMENTS = cast(Table, CourseEnrollment.__table__)


def _in_session(session: AsyncSession, user_id: str) -> User | None:
    obj = session.identity_map.get(identity_key(User, user_id))
    return obj if isinstance(obj, User) else None


async def get_user_by_id(reader: Reader, user_id: str) -> User | None:
    """The user, on the driver (core/sql.py): every signed-in request reads its caller here,
    so no ORM loading, and a request that only reads sends no BEGIN/COMMIT. Through a
    session, the object is the session's, as an ORM query's would be; on a bare connection
    (a read connection, a write transaction's) it belongs to no session (changes to it are
    never saved)."""
    row = await _USER_ROW.fetchrow(reader, user_id=user_id)
    if row is None:
        return None
    return as_loaded(reader, User, **_user_fields(user_id, row))


def _user_fields(user_id: str, row: Record) -> dict[str, Any]:
    """A row starting with `_USER_COLUMNS` as User's attributes."""
    return {
        "id": user_id,
        "email": row[0],
        "username": row[1],
        "password": row[2],
        "role": Role(row[3]),
        "created_at": aware(row[4]),
        "updated_at": aware(row[5]),
    }


# The user's columns as `_user_fields` reads them, first in every row it maps.
_USER_COLUMNS = (
    USERS.c.email,
    USERS.c.username,
    USERS.c.password,
    USERS.c.role,
    USERS.c.createdAt,
    USERS.c.updatedAt,
)
_USER_ROW = DriverStatement(
    select(*_USER_COLUMNS).where(USERS.c.id == bindparam("user_id", type_=Text()))
)


# The hot statements are built once, with named parameters: SQLAlchemy then neither
# rebuilds them nor recomputes their cache keys on every call.
_INSERT_USER = insert(USERS).values(
    id=bindparam("id"),
    email=bindparam("email"),
    username=bindparam("username"),
    password=bindparam("password"),
    role=bindparam("role"),
    createdAt=bindparam("now"),
    updatedAt=bindparam("now"),
)
_INSERT_USER_WITH_PROFILE = _INSERT_USER.add_cte(
    insert(PROFILES)
    .values(
        id=bindparam("profile_id"),
        userId=bindparam("id"),
        firstName=bindparam("first_name"),
        lastName=bindparam("last_name"),
        bio=bindparam("bio"),
        phoneNumber=bindparam("phone_number"),
        createdAt=bindparam("now"),
        updatedAt=bindparam("now"),
    )
    .cte("new_profile")
)
_INSERT_USER_SQL = DriverStatement(_INSERT_USER)
_INSERT_USER_WITH_PROFILE_SQL = DriverStatement(_INSERT_USER_WITH_PROFILE)
_SELECT_USER_WITH_PROFILE = (
    select(User)
    .options(joinedload(User.profile))
    .where(User.id == bindparam("user_id"))
    .execution_options(populate_existing=True)
)
_UPDATE_ROLE = (
    update(USERS)
    .where(USERS.c.id == bindparam("user_id"))
    .values(role=bindparam("new_role"), updatedAt=bindparam("now"))
)
_DELETE_USER = (
    delete(USERS)
    .where(USERS.c.id == bindparam("user_id"))
    .add_cte(delete(PROFILES).where(PROFILES.c.userId == bindparam("user_id")).cte("gone_profile"))
    .add_cte(
        delete(PREFERENCES)
        .where(PREFERENCES.c.userId == bindparam("user_id"))
        .cte("gone_preferences")
    )
    .add_cte(
        delete(ENROLLMENTS)
        .where(ENROLLMENTS.c.userId == bindparam("user_id"))
        .cte("gone_enrollments")
    )
)


def _new_user(*, email: str, username: str, password_hash: str, role: Role, now: datetime) -> User:
    return loaded_object(
        User,
        id=new_id(),
        email=email,
        username=username,
        password=password_hash,
        role=role,
        created_at=now,
        updated_at=now,
    )


def _user_parameters(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username,
        "password": user.password,
        "role": user.role,
        "now": user.created_at,
    }


async def create_user(
    writer: Writer,
    *,
    email: str,
    username: str,
    password_hash: str,
    role: Role = Role.user,
) -> User:
    """Insert a user (as given: the service normalises) in one INSERT.

    A taken email or username raises IntegrityError (`User_email_key`,
    `User_username_key`)."""
    user = _new_user(
        email=email, username=username, password_hash=password_hash, role=role, now=utcnow()
    )
    await _INSERT_USER_SQL.fetch_in_transaction(writer, **_user_parameters(user))
    attach_written(writer, user)
    # A new user has neither: saying so spares a query should a caller look.
    set_committed_value(user, "profile", None)
    set_committed_value(user, "preferences", None)
    return user


async def insert_user_with_profile(
    writer: Writer,
    *,
    email: str,
    username: str,
    password_hash: str,
    role: Role = Role.user,
    first_name: str | None = None,
    last_name: str | None = None,
    bio: str | None = None,
    phone_number: str | None = None,
) -> User:
    """A user and their profile in ONE statement (the profile's INSERT rides in a CTE):
    both rows or neither, in the caller's transaction, with one round trip. The
    foreign key is checked at the end of the statement, when both rows exist."""
    now = utcnow()
    user = _new_user(
        email=email, username=username, password_hash=password_hash, role=role, now=now
    )
    profile = loaded_object(
        UserProfile,
        id=new_id(),
        user_id=user.id,
        first_name=first_name,
        last_name=last_name,
        bio=bio,
        phone_number=phone_number,
        created_at=now,
        updated_at=now,
    )
    parameters = _user_parameters(user)
    parameters.update(
        profile_id=profile.id,
        first_name=first_name,
        last_name=last_name,
        bio=bio,
        phone_number=phone_number,
    )
    await _INSERT_USER_WITH_PROFILE_SQL.fetch_in_transaction(writer, **parameters)
    attach_written(writer, user, profile)
    set_committed_value(profile, "user", user)
    set_committed_value(user, "profile", profile)
    set_committed_value(user, "preferences", None)
    return user


# The same read on the request's asyncpg connection (core/sql.py): no ORM loading, and
# no BEGIN/COMMIT for a request that only reads.
_USER_WITH_PROFILE_ROW = DriverStatement(
    select(
        *_USER_COLUMNS,
        PROFILES.c.id,
        PROFILES.c.firstName,
        PROFILES.c.lastName,
        PROFILES.c.bio,
        PROFILES.c.phoneNumber,
        PROFILES.c.createdAt,
        PROFILES.c.updatedAt,
    )
    .select_from(USERS.outerjoin(PROFILES, PROFILES.c.userId == USERS.c.id))
    .where(USERS.c.id == bindparam("user_id", type_=Text()))
)


async def get_user_with_profile(session: AsyncSession, user_id: str) -> User | None:
    """A user with the profile loaded (None if they have none), in one query.

    The row is read on the driver and made into objects attached to the session as
    loaded (~60 µs against ~250 µs for the ORM's joined load). Should the session
    already hold the user or their profile, the ORM statement refreshes those instead."""
    if session.identity_map and (
        _in_session(session, user_id) is not None
        or any(
            isinstance(obj, UserProfile) and obj.user_id == user_id
            for obj in session.identity_map.values()
        )
    ):
        result = await session.scalars(_SELECT_USER_WITH_PROFILE, {"user_id": user_id})
        return result.one_or_none()
    row = await _USER_WITH_PROFILE_ROW.fetchrow(session, user_id=user_id)
    if row is None:
        return None
    user = as_loaded(session, User, **_user_fields(user_id, row))
    profile = None
    if row[6] is not None:
        profile = as_loaded(
            session,
            UserProfile,
            id=row[6],
            user_id=user_id,
            first_name=row[7],
            last_name=row[8],
            bio=row[9],
            phone_number=row[10],
            created_at=aware(row[11]),
            updated_at=aware(row[12]),
        )
        set_committed_value(profile, "user", user)
    set_committed_value(user, "profile", profile)
    return user


async def update_user_role(session: AsyncSession, *, user_id: str, role: Role) -> bool:
    """Set a user's role in one UPDATE; True if the user exists. (The last-admin rule is
    the service's: `users.service.change_role`.)"""
    now = utcnow()
    result = await session.execute(_UPDATE_ROLE, {"user_id": user_id, "new_role": role, "now": now})
    if (user := _in_session(session, user_id)) is not None:
        set_committed_value(user, "role", role)
        set_committed_value(user, "updated_at", now)
    return _rowcount(result) > 0


async def delete_user(session: AsyncSession, *, user_id: str) -> bool:
    """Delete a user with their profile, preferences and enrollments, in one statement;
    True if the user existed.

    The foreign keys are RESTRICT, so the children go first: their DELETEs ride in
    CTEs, and the constraints are checked at the end of the statement, when they are
    gone. A user with orders (or coupon usages) is refused by the database
    (IntegrityError): such an account is anonymised instead (`anonymise_user`)."""
    result = await session.execute(_DELETE_USER, {"user_id": user_id})
    _forget(session, user_id)
    return _rowcount(result) > 0


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _forget(session: AsyncSession, user_id: str) -> None:
    """Drop a deleted or rewritten user's objects from the session's identity map, so a
    later read in the same session does not see stale rows."""
    if not session.identity_map:
        return
    for obj in list(session.identity_map.values()):
        owner = obj.id if isinstance(obj, User) else getattr(obj, "user_id", None)
        if isinstance(obj, User | UserProfile | UserPreference) and owner == user_id:
            session.expunge(obj)


# --- sign-up, sign-in and account changes ----------------------------------------------


async def find_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose email or username is `login`, case-insensitively (one query). An
    email match wins should one row's email equal another's username."""
    login = login.lower()
    email_match = _lower(User.email) == login
    statement = (
        select(User)
        .where(or_(email_match, _lower(User.username) == login))
        .order_by(email_match.desc())
        .limit(1)
    )
    return (await session.scalars(statement)).first()


@dataclass(frozen=True)
class TakenFields:
    email: bool
    username: bool


async def taken_fields(
    session: AsyncSession,
    *,
    email: str | None,
    username: str | None,
    exclude_user_id: str | None = None,
) -> TakenFields:
    """Whether another account already has this email / username, case-insensitively,
    in one query."""
    conditions: list[ColumnElement[bool]] = []
    email_match: ColumnElement[bool] = literal(False)
    username_match: ColumnElement[bool] = literal(False)
    if email is not None:
        email_match = _lower(User.email) == email.lower()
        conditions.append(email_match)
    if username is not None:
        username_match = _lower(User.username) == username.lower()
        conditions.append(username_match)
    if not conditions:
        return TakenFields(email=False, username=False)
    statement = select(email_match, username_match).where(or_(*conditions))
    if exclude_user_id is not None:
        statement = statement.where(User.id != exclude_user_id)
    rows = (await session.execute(statement)).all()
    return TakenFields(email=any(row[0] for row in rows), username=any(row[1] for row in rows))


async def update_user_fields(session: AsyncSession, user: User, changes: dict[str, Any]) -> None:
    """Apply changes to a loaded user and write them (IntegrityError on a taken email or
    username)."""
    for name, value in changes.items():
        setattr(user, name, value)
    user.updated_at = utcnow()
    await session.flush()


async def replace_password_hash(session: AsyncSession, user: User, new_hash: str) -> bool:
    """Store a new hash only if the stored one is still the one `user` was read with
    (compare and set): a password changed meanwhile by another request is never
    overwritten. True if it was stored (and `user` now holds it)."""
    statement = (
        update(User)
        .where(User.id == user.id, User.password == user.password)
        .values(password=new_hash, updated_at=utcnow())
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    if (await session.execute(statement)).first() is None:
        return False
    set_committed_value(user, "password", new_hash)
    return True


async def has_orders(session: AsyncSession, user_id: str) -> bool:
    statement = select(select(Order.id).where(Order.user_id == user_id).exists())
    return bool((await session.execute(statement)).scalar_one())


async def anonymise_user(
    session: AsyncSession, *, user_id: str, email: str, username: str, password: str
) -> bool:
    """Rewrite the user's identity and drop their profile and preferences, in one
    statement; orders, enrollments and coupon usages stay. True if the user existed."""
    statement = (
        update(User)
        .where(User.id == user_id)
        .values(email=email, username=username, password=password, updated_at=utcnow())
        .returning(User.id)
        .add_cte(delete(UserProfile).where(UserProfile.user_id == user_id).cte("gone_profile"))
        .add_cte(
            delete(UserPreference).where(UserPreference.user_id == user_id).cte("gone_preferences")
        )
    )
    done = (await session.execute(statement)).first() is not None
    _forget(session, user_id)
    return done


@dataclass(frozen=True)
class LockedAccount:
    role: Role
    admins: int  # how many admins the store has, this one included if it is one


async def lock_account(session: AsyncSession, user_id: str) -> LockedAccount | None:
    """Prepare to demote or remove a user: lock the set of admins, then the user's row,
    until the transaction ends; None if there is no such user.

    Every role change and account removal takes the same advisory lock first, so they
    run one after another and each sees the committed outcome of the one before (READ
    COMMITTED: each statement takes a fresh snapshot): the last admin can never be
    removed by a race. The row lock (FOR UPDATE) also holds off an order being placed
    for the user meanwhile (its foreign-key check needs a KEY SHARE lock on the row),
    so "has orders?" stays true or false until we are done. One lock order everywhere
    (advisory, then row) means no deadlock between two of these."""
    await session.execute(select(func.pg_advisory_xact_lock(ADMIN_SET_LOCK_KEY)))
    admin = aliased(User)
    admins = (
        select(func.count())
        .select_from(admin)
        .where(admin.role == Role.admin)
        .scalar_subquery()
        .label("admins")
    )
    statement = select(User.role, admins).where(User.id == user_id).with_for_update(of=User)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    return LockedAccount(role=row[0], admins=int(row[1]))


# --- profile and preferences ---------------------------------------------------------------


async def get_profile(session: AsyncSession, user_id: str) -> UserProfile | None:
    return await session.scalar(select(UserProfile).where(UserProfile.user_id == user_id))


async def get_preferences(session: AsyncSession, user_id: str) -> UserPreference | None:
    return await session.scalar(select(UserPreference).where(UserPreference.user_id == user_id))


async def put_profile(
    session: AsyncSession, *, user_id: str, fields: dict[str, Any]
) -> UserProfile:
    """Create or replace the user's profile in one INSERT … ON CONFLICT statement (safe
    against two first writes at once)."""
    now = utcnow()
    statement = (
        pg_insert(UserProfile)
        .values(id=new_id(), user_id=user_id, created_at=now, updated_at=now, **fields)
        .on_conflict_do_update(
            index_elements=[UserProfile.user_id],
            # ON CONFLICT bypasses `onupdate`: updatedAt is set here.
            set_={**_physical(UserProfile, fields), "updatedAt": now},
        )
        .returning(UserProfile)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one()


async def patch_preferences(
    session: AsyncSession, *, user_id: str, changes: dict[str, Any]
) -> UserPreference:
    """Create the preferences (the schema's defaults for what is not given) or change the
    given fields, in one INSERT … ON CONFLICT statement."""
    now = utcnow()
    insert_statement = pg_insert(UserPreference).values(
        id=new_id(), user_id=user_id, created_at=now, updated_at=now, **changes
    )
    statement = (
        insert_statement.on_conflict_do_update(
            index_elements=[UserPreference.user_id],
            set_={**_physical(UserPreference, changes), "updatedAt": now},
        )
        .returning(UserPreference)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one()


def _physical(
    model: type[UserProfile] | type[UserPreference], fields: dict[str, Any]
) -> dict[str, Any]:
    """Attribute names → column names, as ON CONFLICT's SET wants them."""
    columns = model.__mapper__.columns
    return {columns[name].name: value for name, value in fields.items()}


# --- administration ----------------------------------------------------------------------


@dataclass(frozen=True)
class UserSummary:
    id: str
    email: str
    username: str
    role: Role
    created_at: datetime

    @property
    def keyset(self) -> TimeKeyset:
        return (self.created_at, self.id)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_users(
    session: AsyncSession,
    *,
    prefix: str | None = None,
    role: Role | None = None,
    after: TimeKeyset | None = None,
    limit: int = 20,
) -> Sequence[UserSummary]:
    """A page of users, newest first, in one query. `prefix` matches the start of the
    email or the username, case-insensitively (the lower-case indexes of 0005 serve it);
    without it, `User_createdAt_id_idx` / `User_role_createdAt_id_idx` serve the order."""
    statement = select(User.id, User.email, User.username, User.role, User.created_at)
    if prefix:
        # The pattern is bound whole (not `param || '%'`), so the planner sees the prefix.
        pattern = _escape_like(prefix.lower()) + "%"
        statement = statement.where(
            or_(
                _lower(User.email).like(pattern, escape="\\"),
                _lower(User.username).like(pattern, escape="\\"),
            )
        )
    if role is not None:
        statement = statement.where(User.role == role)
    if after is not None:
        statement = statement.where(tuple_(User.created_at, User.id) < after)
    statement = statement.order_by(User.created_at.desc(), User.id.desc()).limit(limit)
    rows = (await session.execute(statement)).all()
    return [UserSummary(*row) for row in rows]


@dataclass(frozen=True)
class UserDetail:
    user: User
    orders_count: int
    enrollments_count: int


async def get_user_detail(session: AsyncSession, user_id: str) -> UserDetail | None:
    """A user with profile, preferences and the counts of their orders and enrollments,
    in one query (the counts are correlated subqueries on indexed user ids)."""
    orders_count = (
        select(func.count()).where(Order.user_id == User.id).correlate(User).scalar_subquery()
    )
    enrollments_count = (
        select(func.count())
        .where(CourseEnrollment.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    statement = (
        select(User, orders_count, enrollments_count)
        .options(joinedload(User.profile), joinedload(User.preferences))
        .where(User.id == user_id)
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    return UserDetail(user=row[0], orders_count=int(row[1]), enrollments_count=int(row[2]))
