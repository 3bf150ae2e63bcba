"""The rules of accounts: sign-up conflicts, profile and preferences, deletion or
anonymisation, roles and the last admin, and the admins' user list.

Everything runs in the caller's transaction (the request's, or a CLI command's) and
flushes at most: a failure anywhere leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.auth.throttle import SignInThrottle, account_key
from coursehub.core.database import violated_constraint
from coursehub.core.errors import FieldError, Forbidden, StoreError, Unauthorized
from coursehub.core.models import utcnow
from coursehub.core.pagination import CursorCodec, Page, decode_time_keyset, time_keyset_page
from coursehub.core.security import (
    UNUSABLE_PASSWORD,
    hash_password_off_loop,
    verify_password_off_loop,
)
from coursehub.core.sql import Reader, Writer
from coursehub.orders import repository as orders_repository
from coursehub.users import repository
from coursehub.users.errors import (
    AccountRemoved,
    EmailTaken,
    LastAdmin,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
)
from coursehub.users.models import Role, User, UserPreference, UserProfile
from coursehub.users.repository import TakenFields, UserDetail, UserSummary
from coursehub.users.schemas import (
    AdminUserListQuery,
    PreferencesUpdate,
    ProfilePut,
    Removal,
    UserCreate,
    UserUpdate,
)

EMAIL_CONSTRAINT = "User_email_key"
USERNAME_CONSTRAINT = "User_username_key"
ANONYMISED_EMAIL_DOMAIN = "deleted.invalid"  # .invalid: RFC 2606, never deliverable


# --- conflicts ---------------------------------------------------------------------------


def _taken_error(taken: TakenFields) -> StoreError:
    errors = []
    if taken.email:
        errors.append(FieldError("email", "is already used by another account", "taken"))
    if taken.username:
        errors.append(FieldError("username", "is already used by another account", "taken"))
    if taken.email:
        detail = "an account with this email already exists"
        if taken.username:
            detail = "an account with this email, and one with this username, already exist"
        return EmailTaken(detail, errors=errors)
    return UsernameTaken("an account with this username already exists", errors=errors)


def _conflict_from(exc: IntegrityError) -> StoreError | None:
    """A unique violation on email or username (a race the check before lost) as a 409."""
    name = violated_constraint(exc, expected=[EMAIL_CONSTRAINT, USERNAME_CONSTRAINT])
    if name == EMAIL_CONSTRAINT:
        return _taken_error(TakenFields(email=True, username=False))
    if name == USERNAME_CONSTRAINT:
        return _taken_error(TakenFields(email=False, username=True))
    return None


@contextmanager
def _taken_as_conflict() -> Iterator[None]:
    """Around a write of an email or username: the unique violation of either (another
    account took it since the check) raised as EmailTaken / UsernameTaken (409)."""
    try:
        yield
    except IntegrityError as exc:
        if (conflict := _conflict_from(exc)) is not None:
            raise conflict from None
        raise


async def _check_free(
    reader: Reader,
    *,
    email: str | None,
    username: str | None,
    exclude_user_id: str | None = None,
) -> None:
    taken = await repository.taken_fields(
        reader, email=email, username=username, exclude_user_id=exclude_user_id
    )
    if taken.email or taken.username:
        raise _taken_error(taken)


# --- creating accounts -------------------------------------------------------------------


async def create_user_with_profile(
    writer: Writer,
    *,
    email: str,
    username: str,
    password_hash: str,
    first_name: str | None = None,
    last_name: str | None = None,
    bio: str | None = None,
    phone_number: str | None = None,
    role: Role = Role.user,
) -> User:
    """DATABASE.md's transaction: a user and their profile, both or neither, in the
    caller's transaction (one statement, one round trip). Email and username are
    stored lower-case; a taken one raises EmailTaken / UsernameTaken (409)."""
    with _taken_as_conflict():
        return await repository.insert_user_with_profile(
            writer,
            email=email.lower(),
            username=username.lower(),
            password_hash=password_hash,
            role=role,
            first_name=first_name,
            last_name=last_name,
            bio=bio,
            phone_number=phone_number,
        )


async def register(writer: Writer, data: UserCreate, *, role: Role = Role.user) -> User:
    """Sign-up: a new account (no profile or preferences until first written). A taken
    email or username, in any case, is a 409 naming the field."""
    # Hashed first, before the unit of work's first statement: argon2's ~100 ms then hold
    # no pooled connection and no open transaction (a write transaction begins with its
    # first statement). The price: a taken email costs a hash too, as a new one does.
    password_hash = await hash_password_off_loop(data.password)
    await _check_free(writer, email=data.email, username=data.username)
    with _taken_as_conflict():  # the same email or username registered meanwhile
        return await repository.create_user(
            writer,
            email=data.email,
            username=data.username,
            password_hash=password_hash,
            role=role,
        )


def _token_no_longer_valid() -> Unauthorized:
    """What a request of an account removed (or re-passworded) since its token was checked
    gets: what any request after that gets."""
    return Unauthorized("the access token is no longer valid; sign in again")


async def _hold_own_account(session: AsyncSession, user: User, *, to_update: bool = False) -> None:
    """Before the signed-in user changes their own account: hold its row as their token
    found it, so an account removal (deletion or anonymisation, by an admin or by their own
    DELETE /me) either waits for this change or is seen done, answered like any request
    after it (401). Without it a change racing a removal failed on the profile's foreign
    key (500), or wrote a new email back onto the anonymised row."""
    if not await repository.hold_account(
        session, user_id=user.id, password_hash=user.password, to_update=to_update
    ):
        raise _token_no_longer_valid()


async def update_account(session: AsyncSession, user: User, data: UserUpdate) -> User:
    """PATCH /me: a new email and/or username, with sign-up's rules and conflicts."""
    changes = data.model_dump(exclude_unset=True)
    changes = {name: value for name, value in changes.items() if getattr(user, name) != value}
    if not changes:
        return user
    await _hold_own_account(session, user, to_update=True)
    await _check_free(
        session,
        email=changes.get("email"),
        username=changes.get("username"),
        exclude_user_id=user.id,
    )
    with _taken_as_conflict():
        await repository.update_user_fields(session, user, changes)
    return user


async def check_password(
    user: User,
    password: str,
    *,
    throttle: SignInThrottle,
    address: str | None,
    field: str = "password",
) -> None:
    """The signed-in user's password, confirming a sensitive change. Checked under the
    account's sign-in counts (auth/throttle.py): a stolen access token must not allow
    unlimited guesses."""
    account = account_key(user_id=user.id, login=user.email)
    await throttle.admit(account=account, address=address)
    matches, _ = await verify_password_off_loop(password, user.password)
    if not matches:
        raise WrongPassword(
            "the password is wrong",
            errors=[FieldError(field, "does not match the account's password", "wrong_password")],
        )
    await throttle.succeeded(account=account, address=address)


# --- removing accounts -------------------------------------------------------------------


async def _lock_account(
    writer: Writer, user_id: str, *, acting_admin_id: str | None
) -> repository.LockedAccount:
    """`repository.lock_account`; 404 if there is no such user, 403 if the acting admin
    (None: the user themself) is no longer one, now that the admins' lock is held."""
    locked = await repository.lock_account(writer, user_id, caller_id=acting_admin_id)
    if locked is None:
        raise UserNotFound(f"no user with id {user_id!r}")
    if acting_admin_id is not None and locked.caller_role != Role.admin:
        raise Forbidden("you are no longer an admin")
    return locked


async def remove_account(
    writer: Writer,
    user_id: str,
    *,
    acting_admin_id: str | None = None,
    checked_password_hash: str | None = None,
) -> Removal:
    """Delete the account, or anonymise it if it has orders (accounting keeps them): its
    email, username and password become unusable, its role user, its profile and
    preferences go, and its unpaid pending or processing orders are cancelled (a payment
    the gateway captures later is then flagged for a refund, not kept for an account
    nobody can use). Either way nobody can sign in to it again and its tokens stop working.
    The last admin cannot be removed (409). `acting_admin_id`: the admin removing it
    (None: the user themself, DELETE /me). `checked_password_hash`: the hash DELETE /me
    checked the caller's password against; changed since (a password change that committed
    while it was checked), the removal is refused as any request of the old token is."""
    # Its orders before its row, in the order a payment takes them (the order, then the
    # row through its enrollments' foreign key), so that the two never deadlock.
    await orders_repository.lock_unpaid_orders_of_user(writer, user_id=user_id)
    locked = await _lock_account(writer, user_id, acting_admin_id=acting_admin_id)
    if acting_admin_id is None and (
        locked.removed
        or (checked_password_hash is not None and locked.password_hash != checked_password_hash)
    ):
        # Removed by an admin, or its password changed, while this request waited.
        raise _token_no_longer_valid()
    if locked.role == Role.admin and locked.admins <= 1:
        raise LastAdmin(
            "this is the store's only admin; make another user an admin before removing it"
        )
    if await repository.has_orders(writer, user_id):
        await repository.anonymise_user(
            writer,
            user_id=user_id,
            email=f"deleted-{user_id}@{ANONYMISED_EMAIL_DOMAIN}",
            username=f"deleted-{user_id}",
            password=UNUSABLE_PASSWORD,
        )
        # After the account's lock: a checkout of this user (it holds their row) has
        # committed its order by now, and none can start. The orders were locked first
        # (above): a payment that held one has completed it, and it stays completed.
        await orders_repository.cancel_unpaid_orders_of_user(writer, user_id=user_id, now=utcnow())
        return Removal.anonymised
    await repository.delete_user(writer, user_id=user_id)
    return Removal.deleted


async def delete_own_account(
    session: AsyncSession,
    user: User,
    *,
    password: str,
    throttle: SignInThrottle,
    address: str | None,
) -> Removal:
    """DELETE /me: confirmed with the password. Removed meanwhile (the same request sent
    twice, an admin's removal): 401, as any request after the removal."""
    await check_password(user, password, throttle=throttle, address=address)
    try:
        return await remove_account(session, user.id, checked_password_hash=user.password)
    except UserNotFound:
        raise _token_no_longer_valid() from None


# --- profile and preferences --------------------------------------------------------------


async def get_profile(session: AsyncSession, user: User) -> UserProfile | None:
    return await repository.get_profile(session, user.id)


async def put_profile(session: AsyncSession, user: User, data: ProfilePut) -> UserProfile:
    """Create the profile on first write, replace it after (left-out fields are cleared)."""
    await _hold_own_account(session, user)
    return await repository.put_profile(session, user_id=user.id, fields=data.model_dump())


async def get_preferences(session: AsyncSession, user: User) -> UserPreference | None:
    return await repository.get_preferences(session, user.id)


async def patch_preferences(
    session: AsyncSession, user: User, data: PreferencesUpdate
) -> UserPreference:
    """Change the fields sent; created on first write with the schema's defaults for the
    rest."""
    changes = data.model_dump(exclude_unset=True, mode="json")  # enums as their values
    await _hold_own_account(session, user)
    return await repository.patch_preferences(session, user_id=user.id, changes=changes)


# --- administration -----------------------------------------------------------------------


async def change_role(
    writer: Writer, user_id: str, role: Role, *, acting_admin_id: str
) -> UserDetail:
    """PATCH /admin/users/{id}: the new role takes effect on the user's next request (the
    role is read from the database, never trusted from a token). The last admin cannot
    be demoted (409); two demotions at once cannot both pass (see `lock_account`); an
    admin demoted meanwhile is refused (403); a removed account takes no role (409)."""
    locked = await _lock_account(writer, user_id, acting_admin_id=acting_admin_id)
    if locked.removed:
        raise AccountRemoved(f"the account {user_id!r} was removed; it takes no role")
    if locked.role == Role.admin and role != Role.admin and locked.admins <= 1:
        raise LastAdmin("this is the store's only admin; make another user an admin first")
    if locked.role != role:
        await repository.update_user_role(writer, user_id=user_id, role=role)
    return await get_user_detail(writer, user_id)


async def get_user_detail(reader: Reader, user_id: str) -> UserDetail:
    detail = await repository.get_user_detail(reader, user_id)
    if detail is None:
        raise UserNotFound(f"no user with id {user_id!r}")
    return detail


def _cursor_context(query: AdminUserListQuery) -> str:
    """A cursor is bound to the list's filters: reused with others it would serve a
    wrong page, so it is a 400 instead."""
    prefix = (query.q or "").lower()
    return f"admin-users:{query.role.value if query.role else ''}:{prefix}"


async def list_users(
    session: AsyncSession, query: AdminUserListQuery, *, codec: CursorCodec
) -> Page[UserSummary]:
    """GET /admin/users: newest first, narrowed by an email/username prefix and a role,
    keyset-paginated (one query per page)."""
    context = _cursor_context(query)
    after = decode_time_keyset(codec, context, query.cursor) if query.cursor else None
    rows = await repository.list_users(
        session, prefix=query.q, role=query.role, after=after, limit=query.limit + 1
    )
    return time_keyset_page(
        rows, limit=query.limit, keyset=lambda row: row.keyset, codec=codec, context=context
    )


async def create_admin(
    session: AsyncSession, data: UserCreate, *, promote: bool = False
) -> tuple[User, bool]:
    """`coursehub users create-admin`: a new admin account, or with `promote` an existing
    account (found by email) made an admin. (user, True if it was created)."""
    if promote:
        existing = await repository.find_user_by_login(session, data.email)
        if existing is not None and existing.email.lower() == data.email:
            # Under the admins' lock and the row's, as every role change: a removal of this
            # account in progress is waited for, and then seen (not promoted after it).
            locked = await repository.lock_account(session, existing.id)
            if locked is None:
                raise UserNotFound(f"the account {data.email} was just deleted")
            if locked.removed:
                raise AccountRemoved(f"the account {data.email} was just removed")
            if locked.role != Role.admin:  # (update_user_role refreshes `existing` too)
                await repository.update_user_role(session, user_id=existing.id, role=Role.admin)
            return existing, False
    return await register(session, data, role=Role.admin), True
