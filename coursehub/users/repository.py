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
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from coursehub.core.locks import ADMIN_SET_LOCK_KEY
from coursehub.core.models import new_id, utcnow
from coursehub.core.pagination import TimeKeyset
from coursehub.core.security import UNUSABLE_PASSWORD
from coursehub.core.sql import (
    DriverStatement,
    Reader,
    Writer,
    as_refreshed,
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
# These run as Core statements on the tables (no ORM statement layer; RETURNING only the
# id, to tell whether a row was there): every value is made here (ids and timestamps are
# the application's, as in Prisma), so the ORM objects handed back are built from what was
# sent and, in a session, attached to it as loaded, without a round trip to read them back.

USERS = cast(Table, User.__table__)
PROFILES = cast(Table, UserProfile.__table__)
PREFERENCES = cast(Table, UserPreference.__table__)
ENROLLMENTS = cast(Table, CourseEnrollment.__table__)


def _in_session(session: AsyncSession, user_id: str) -> User | None:
    obj = session.identity_map.get(identity_key(User, user_id))
    return obj if isinstance(obj, User) else None


async def get_user_by_id(reader: Reader, user_id: str) -> User | None:
    """The user as the database has it now, on the driver (core/sql.py): every signed-in
    request reads its caller here (its role and password are never trusted from a token or
    from an object read earlier), so no ORM loading, and a request that only reads sends no
    BEGIN/COMMIT. Through a session, the session's own object, refreshed from the row; on a
    bare connection (a read connection, a write transaction's) an object of no session
    (changes to it are never saved)."""
    row = await _USER_ROW.fetchrow(reader, user_id=user_id)
    if row is None:
        return None
    return as_refreshed(reader, User, **_user_fields(user_id, row))


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
# The profile's columns as `_profile_fields` reads them.
_PROFILE_COLUMNS = (
    PROFILES.c.id,
    PROFILES.c.firstName,
    PROFILES.c.lastName,
    PROFILES.c.bio,
    PROFILES.c.phoneNumber,
    PROFILES.c.createdAt,
    PROFILES.c.updatedAt,
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
_UPDATE_ROLE = (
    update(USERS)
    .where(USERS.c.id == bindparam("user_id"))
    .values(role=bindparam("new_role"), updatedAt=bindparam("now"))
    .returning(USERS.c.id)
)
_DELETE_USER = (
    delete(USERS)
    .where(USERS.c.id == bindparam("user_id"))
    .returning(USERS.c.id)
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
_UPDATE_ROLE_SQL = DriverStatement(_UPDATE_ROLE)
_DELETE_USER_SQL = DriverStatement(_DELETE_USER)

# Sign-up's and the admins' account statements, compiled once for the driver (core/sql.py),
# so they run alike in a session and in a write transaction.
_USER_ID = bindparam("user_id", type_=Text)
_EMAIL = bindparam("email", type_=Text)
_USERNAME = bindparam("username", type_=Text)
_TAKEN_FIELDS_SQL = DriverStatement(
    select(
        func.coalesce(func.bool_or(_lower(USERS.c.email) == _EMAIL), False),
        func.coalesce(func.bool_or(_lower(USERS.c.username) == _USERNAME), False),
    ).where(
        or_(_lower(USERS.c.email) == _EMAIL, _lower(USERS.c.username) == _USERNAME),
        USERS.c.id.is_distinct_from(bindparam("exclude_user_id", type_=Text)),
    )
)
_HAS_ORDERS_SQL = DriverStatement(select(exists().where(Order.user_id == _USER_ID)))
_ANONYMISE_USER_SQL = DriverStatement(
    update(USERS)
    .where(USERS.c.id == _USER_ID)
    .values(
        email=bindparam("email"),
        username=bindparam("username"),
        password=bindparam("password"),
        # Nobody can sign in to it, so it must not count as an admin (the last-admin rule,
        # the seed's "is there an admin?").
        role=Role.user,
        updatedAt=bindparam("now"),
    )
    .returning(USERS.c.id)
    .add_cte(delete(PROFILES).where(PROFILES.c.userId == _USER_ID).cte("gone_profile"))
    .add_cte(delete(PREFERENCES).where(PREFERENCES.c.userId == _USER_ID).cte("gone_preferences"))
)
_LOCK_ADMIN_SET_SQL = DriverStatement(select(func.pg_advisory_xact_lock(ADMIN_SET_LOCK_KEY)))
_admin = aliased(USERS)
_LOCK_ACCOUNT_SQL = DriverStatement(
    select(
        USERS.c.role,
        select(func.count())
        .select_from(_admin)
        .where(_admin.c.role == Role.admin)
        .scalar_subquery(),
        USERS.c.password,
        select(_admin.c.role)
        .where(_admin.c.id == bindparam("caller_id", type_=Text))
        .scalar_subquery(),
    )
    .where(USERS.c.id == _USER_ID)
    .with_for_update(of=USERS)
)
# The row as the request's token found it (the same password hash), locked FOR KEY SHARE:
# the weakest lock that conflicts with an account removal's FOR UPDATE (and takes nothing
# from a checkout, whose foreign-key checks take the same).
_HELD_ACCOUNT = select(USERS.c.id).where(
    USERS.c.id == _USER_ID, USERS.c.password == bindparam("password", type_=Text)
)
_HOLD_ACCOUNT_SQL = DriverStatement(
    _HELD_ACCOUNT.with_for_update(of=USERS, read=True, key_share=True)
)
# The same, FOR UPDATE: before changing the row's email or username. An UPDATE of a column
# under a unique index takes FOR UPDATE anyway; two requests that each held the row FOR KEY
# SHARE first and then both asked for that deadlocked (a form submitted twice: one of them a
# 409 transaction_conflict after a second's wait). Taken first, the second waits its turn.
_HOLD_ACCOUNT_FOR_UPDATE_SQL = DriverStatement(_HELD_ACCOUNT.with_for_update(of=USERS))
_USER_DETAIL_SQL = DriverStatement(
    select(
        *_USER_COLUMNS,
        *_PROFILE_COLUMNS,
        PREFERENCES.c.id,
        PREFERENCES.c.theme,
        PREFERENCES.c.language,
        PREFERENCES.c.notifications,
        PREFERENCES.c.createdAt,
        PREFERENCES.c.updatedAt,
        select(func.count()).where(Order.user_id == USERS.c.id).scalar_subquery(),
        select(func.count()).where(ENROLLMENTS.c.userId == USERS.c.id).scalar_subquery(),
    )
    .select_from(
        USERS.outerjoin(PROFILES, PROFILES.c.userId == USERS.c.id).outerjoin(
            PREFERENCES, PREFERENCES.c.userId == USERS.c.id
        )
    )
    .where(USERS.c.id == _USER_ID)
)


def _new_user(parameters: dict[str, Any], *, profile: UserProfile | None = None) -> User:
    """The user the INSERT's `parameters` (`_user_parameters`) write, as loaded: a new user
    has no preferences yet, and a profile only if written with it; saying so (as loaded
    relationships) spares a query should a caller look."""
    return loaded_object(
        User,
        id=parameters["id"],
        email=parameters["email"],
        username=parameters["username"],
        password=parameters["password"],
        role=parameters["role"],
        created_at=parameters["now"],
        updated_at=parameters["now"],
        profile=profile,
        preferences=None,
    )


def _user_parameters(
    *, email: str, username: str, password_hash: str, role: Role, now: datetime
) -> dict[str, Any]:
    """The parameters of the user's INSERT (`_INSERT_USER`), with a new id."""
    return {
        "id": new_id(),
        "email": email,
        "username": username,
        "password": password_hash,
        "role": role,
        "now": now,
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
    parameters = _user_parameters(
        email=email, username=username, password_hash=password_hash, role=role, now=utcnow()
    )
    await _INSERT_USER_SQL.fetch_in_transaction(writer, **parameters)
    user = _new_user(parameters)
    attach_written(writer, user)
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
    parameters = _user_parameters(
        email=email, username=username, password_hash=password_hash, role=role, now=now
    )
    profile = loaded_object(
        UserProfile,
        id=new_id(),
        user_id=parameters["id"],
        first_name=first_name,
        last_name=last_name,
        bio=bio,
        phone_number=phone_number,
        created_at=now,
        updated_at=now,
    )
    await _INSERT_USER_WITH_PROFILE_SQL.fetch_in_transaction(
        writer,
        **parameters,
        profile_id=profile.id,
        first_name=first_name,
        last_name=last_name,
        bio=bio,
        phone_number=phone_number,
    )
    # One way only (see `_user_with_profile`): with `profile.user` the pair was a reference
    # cycle, a garbage collection every ~60 sign-ups.
    user = _new_user(parameters, profile=profile)
    # The profile first: adding the user to a session cascades to its profile, which must
    # be the session's already (persistent, not a new row to insert).
    attach_written(writer, profile, user)
    return user


# A user and their profile: DATABASE.md's `findUnique` with `include: { profile: true }`.
_USER_WITH_PROFILE_ROW = DriverStatement(
    select(*_USER_COLUMNS, *_PROFILE_COLUMNS)
    .select_from(USERS.outerjoin(PROFILES, PROFILES.c.userId == USERS.c.id))
    .where(USERS.c.id == bindparam("user_id", type_=Text()))
)


async def get_user_with_profile(reader: Reader, user_id: str) -> User | None:
    """A user with the profile loaded (None if they have none), in one query on the driver
    (~60 µs against ~250 µs for the ORM's joined load). Through a session, objects it
    already holds are refreshed from the row, as the ORM's `populate_existing` would."""
    row = await _USER_WITH_PROFILE_ROW.fetchrow(reader, user_id=user_id)
    if row is None:
        return None
    return _user_with_profile(reader, user_id, row)


def _user_with_profile(reader: Reader, user_id: str, row: Record) -> User:
    """The user of a row holding the user's columns, then the profile's from index 6 (NULL
    without one), with `user.profile` loaded. One way only, as everywhere here: the
    profile does not point back (`profile.user`, read by nothing), which would make the
    pair a reference cycle that only the garbage collector frees."""
    user = as_refreshed(reader, User, **_user_fields(user_id, row))
    profile = None
    if row[6] is not None:
        profile = as_refreshed(reader, UserProfile, **_profile_fields(user_id, row, 6))
    set_committed_value(user, "profile", profile)
    return user


def _profile_fields(user_id: str, row: Record, at: int) -> dict[str, Any]:
    """The profile's attributes from a row holding its columns from index `at` on: id,
    firstName, lastName, bio, phoneNumber, createdAt, updatedAt."""
    return {
        "id": row[at],
        "user_id": user_id,
        "first_name": row[at + 1],
        "last_name": row[at + 2],
        "bio": row[at + 3],
        "phone_number": row[at + 4],
        "created_at": aware(row[at + 5]),
        "updated_at": aware(row[at + 6]),
    }


async def update_user_role(writer: Writer, *, user_id: str, role: Role) -> bool:
    """Set a user's role in one UPDATE; True if the user exists. (The last-admin rule is
    the service's: `users.service.change_role`.)"""
    now = utcnow()
    rows = await _UPDATE_ROLE_SQL.fetch_in_transaction(
        writer, user_id=user_id, new_role=role, now=now
    )
    if isinstance(writer, AsyncSession) and (user := _in_session(writer, user_id)) is not None:
        set_committed_value(user, "role", role)
        set_committed_value(user, "updated_at", now)
    return bool(rows)


async def delete_user(writer: Writer, *, user_id: str) -> bool:
    """Delete a user with their profile, preferences and enrollments, in one statement;
    True if the user existed.

    The foreign keys are RESTRICT, so the children go first: their DELETEs ride in
    CTEs, and the constraints are checked at the end of the statement, when they are
    gone. A user with orders (or coupon usages) is refused by the database
    (IntegrityError): such an account is anonymised instead (`anonymise_user`)."""
    rows = await _DELETE_USER_SQL.fetch_in_transaction(writer, user_id=user_id)
    _forget(writer, user_id)
    return bool(rows)


def _forget(writer: Writer, user_id: str) -> None:
    """Drop a deleted or rewritten user's objects from the session's identity map, so a
    later read in the same session does not see stale rows. (A write transaction holds
    no objects.)"""
    if not isinstance(writer, AsyncSession) or not writer.identity_map:
        return
    session = writer
    for obj in list(session.identity_map.values()):
        owner = obj.id if isinstance(obj, User) else getattr(obj, "user_id", None)
        if isinstance(obj, User | UserProfile | UserPreference) and owner == user_id:
            session.expunge(obj)


# --- sign-up, sign-in and account changes ----------------------------------------------


async def find_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose email or username is `login`, case-insensitively (one query, found
    through the lower() indexes; the ordering only ranks the few rows they match).

    The Node app did not fold case, so two of its accounts may differ only in case
    ("DUP@example.com", "dup@example.com"; migration 0005): the row whose email, then
    username, is `login` exactly comes first, so each signs in as it is stored. Then a
    case-insensitive email match, then a username one (an email match wins should one
    row's email equal another's username). Among rows matching alike (a login in a
    third case), the oldest account, the Node app's first with that name: always the
    same one."""
    folded = login.lower()
    email_match = _lower(User.email) == folded
    statement = (
        select(User)
        .where(or_(email_match, _lower(User.username) == folded))
        .order_by(
            (User.email == login).desc(),
            (User.username == login).desc(),
            email_match.desc(),
            User.created_at,
            User.id,
        )
        .limit(1)
    )
    return (await session.scalars(statement)).first()


@dataclass(frozen=True)
class TakenFields:
    email: bool
    username: bool


async def taken_fields(
    reader: Reader,
    *,
    email: str | None,
    username: str | None,
    exclude_user_id: str | None = None,
) -> TakenFields:
    """Whether another account already has this email / username, case-insensitively,
    in one query (a None field is not looked for: `lower(x) = NULL` matches nothing)."""
    if email is None and username is None:
        return TakenFields(email=False, username=False)
    row = await _TAKEN_FIELDS_SQL.fetchrow(
        reader,
        email=None if email is None else email.lower(),
        username=None if username is None else username.lower(),
        exclude_user_id=exclude_user_id,
    )
    assert row is not None  # an aggregate: always one row
    return TakenFields(email=bool(row[0]), username=bool(row[1]))


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


async def has_orders(reader: Reader, user_id: str) -> bool:
    row = await _HAS_ORDERS_SQL.fetchrow(reader, user_id=user_id)
    return bool(row is not None and row[0])


async def anonymise_user(
    writer: Writer, *, user_id: str, email: str, username: str, password: str
) -> bool:
    """Rewrite the user's identity and drop their profile and preferences, in one
    statement; orders, enrollments and coupon usages stay. True if the user existed."""
    rows = await _ANONYMISE_USER_SQL.fetch_in_transaction(
        writer, user_id=user_id, email=email, username=username, password=password, now=utcnow()
    )
    _forget(writer, user_id)
    return bool(rows)


async def lock_admin_set(writer: Writer) -> None:
    """Hold the set of admins still until the transaction ends: every role change, account
    removal and seed of the admin takes this lock first (see `lock_account`)."""
    await _LOCK_ADMIN_SET_SQL.fetch_in_transaction(writer)


@dataclass(frozen=True)
class LockedAccount:
    role: Role
    admins: int  # how many admins the store has, this one included if it is one
    password_hash: str  # as it is now, under the lock

    @property
    def removed(self) -> bool:
        """Anonymised: nobody can sign in to it."""
        return self.password_hash == UNUSABLE_PASSWORD

    caller_role: Role | None  # the caller's role now (None: no caller given, or gone)


async def lock_account(
    writer: Writer, user_id: str, *, caller_id: str | None = None
) -> LockedAccount | None:
    """Prepare to demote or remove a user: lock the set of admins, then the user's row,
    until the transaction ends; None if there is no such user.

    Every role change and account removal takes the same advisory lock first, so they
    run one after another and each sees the committed outcome of the one before (READ
    COMMITTED: each statement takes a fresh snapshot): the last admin can never be
    removed by a race. The row lock (FOR UPDATE) also holds off an order being placed
    for the user meanwhile (its foreign-key check needs a KEY SHARE lock on the row),
    so "has orders?" stays true or false until we are done. One lock order everywhere
    (advisory, then row) means no deadlock between two of these.

    `caller_id`'s role is read under the same lock: an admin demoted while their request
    waited for it is seen as demoted (the role their token's request was admitted with
    is older)."""
    await lock_admin_set(writer)
    rows = await _LOCK_ACCOUNT_SQL.fetch_in_transaction(
        writer, user_id=user_id, caller_id=caller_id
    )
    if not rows:
        return None
    role, admins, password_hash, caller_role = rows[0]
    return LockedAccount(
        role=Role(role),
        admins=int(admins),
        password_hash=password_hash,
        caller_role=Role(caller_role) if caller_role is not None else None,
    )


async def hold_account(
    writer: Writer, *, user_id: str, password_hash: str, to_update: bool = False
) -> bool:
    """Lock the user's row until the transaction ends, if it is still there with this
    password hash (not deleted, anonymised or given a new password since it was read).
    A removal in progress is waited for, and then seen (READ COMMITTED re-checks a row
    that changed while the lock was awaited); one that starts later waits for us.
    `to_update`: the row itself will be changed (its email or username): FOR UPDATE rather
    than FOR KEY SHARE, so that two such changes queue instead of deadlocking."""
    statement = _HOLD_ACCOUNT_FOR_UPDATE_SQL if to_update else _HOLD_ACCOUNT_SQL
    rows = await statement.fetch_in_transaction(writer, user_id=user_id, password=password_hash)
    return bool(rows)


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


async def get_user_detail(reader: Reader, user_id: str) -> UserDetail | None:
    """A user with profile, preferences and the counts of their orders and enrollments,
    in one query on the driver (the counts are correlated subqueries on indexed user ids).
    Through a session, objects it already holds are refreshed from the row."""
    row = await _USER_DETAIL_SQL.fetchrow(reader, user_id=user_id)
    if row is None:
        return None
    user = _user_with_profile(reader, user_id, row)
    preferences = None
    if row[13] is not None:
        preferences = as_refreshed(
            reader,
            UserPreference,
            id=row[13],
            user_id=user_id,
            theme=row[14],
            language=row[15],
            notifications=row[16],
            created_at=aware(row[17]),
            updated_at=aware(row[18]),
        )
    set_committed_value(user, "preferences", preferences)
    return UserDetail(user=user, orders_count=int(row[19]), enrollments_count=int(row[20]))
