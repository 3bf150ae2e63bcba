"""Accounts over HTTP: the signed-in user's own account, profile and preferences, and
the admins' user management. /me routes only ever touch the caller's own rows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from coursehub.auth.dependencies import (
    ADMIN_ERRORS,
    AdminUser,
    ClientAddressDep,
    CodecDep,
    CurrentUser,
    PasswordCheckingUser,
    ThrottleDep,
    WritingAdmin,
)
from coursehub.auth.errors import TooManySignInAttempts
from coursehub.core.dependencies import SessionDep, WriteTransactionDep
from coursehub.core.errors import BadCursor, Unauthorized
from coursehub.core.problems import responses
from coursehub.users import service
from coursehub.users.errors import (
    AccountRemoved,
    EmailTaken,
    LastAdmin,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
)
from coursehub.users.schemas import (
    AccountDelete,
    AccountRemovalRead,
    AdminUserListQuery,
    AdminUserPageRead,
    AdminUserRead,
    PreferencesRead,
    PreferencesUpdate,
    ProfilePut,
    ProfileRead,
    RoleUpdate,
    UserRead,
    UserUpdate,
)

router = APIRouter(tags=["accounts"])


# --- the signed-in user ---------------------------------------------------------------------


@router.get("/me", response_model=UserRead, responses=responses(Unauthorized))
async def get_me(user: CurrentUser) -> UserRead:
    """The signed-in user's account."""
    return UserRead.model_validate(user)


@router.patch(
    "/me",
    response_model=UserRead,
    responses=responses(EmailTaken, UsernameTaken, Unauthorized),
)
async def update_me(session: SessionDep, user: CurrentUser, body: UserUpdate) -> UserRead:
    """Change the email and/or username: sign-up's rules and conflicts apply."""
    updated = await service.update_account(session, user, body)
    return UserRead.model_validate(updated)


@router.delete(
    "/me",
    response_model=AccountRemovalRead,
    responses=responses(WrongPassword, LastAdmin, Unauthorized, TooManySignInAttempts),
)
async def delete_me(
    session: SessionDep,
    user: PasswordCheckingUser,
    throttle: ThrottleDep,
    address: ClientAddressDep,
    body: AccountDelete,
) -> AccountRemovalRead:
    """Delete the account (confirmed with the password, which counts as a sign-in
    attempt). With orders it is anonymised instead and the orders kept. Either way,
    nobody can sign in to it again."""
    outcome = await service.delete_own_account(
        session, user, password=body.password, throttle=throttle, address=address
    )
    return AccountRemovalRead(outcome=outcome)


@router.get("/me/profile", response_model=ProfileRead, responses=responses(Unauthorized))
async def get_profile(session: SessionDep, user: CurrentUser) -> ProfileRead:
    """The profile; every field null until the first PUT."""
    profile = await service.get_profile(session, user)
    return ProfileRead.model_validate(profile) if profile else ProfileRead()


@router.put("/me/profile", response_model=ProfileRead, responses=responses(Unauthorized))
async def put_profile(session: SessionDep, user: CurrentUser, body: ProfilePut) -> ProfileRead:
    """Create or replace the profile: a field left out is cleared."""
    profile = await service.put_profile(session, user, body)
    return ProfileRead.model_validate(profile)


@router.get("/me/preferences", response_model=PreferencesRead, responses=responses(Unauthorized))
async def get_preferences(session: SessionDep, user: CurrentUser) -> PreferencesRead:
    """The preferences; the defaults (light, en, notifications on) until changed."""
    preferences = await service.get_preferences(session, user)
    return PreferencesRead.model_validate(preferences) if preferences else PreferencesRead()


@router.patch("/me/preferences", response_model=PreferencesRead, responses=responses(Unauthorized))
async def patch_preferences(
    session: SessionDep, user: CurrentUser, body: PreferencesUpdate
) -> PreferencesRead:
    """Change the preferences sent; the others keep their value (or default)."""
    preferences = await service.patch_preferences(session, user, body)
    return PreferencesRead.model_validate(preferences)


# --- administration -------------------------------------------------------------------------


@router.get(
    "/admin/users",
    response_model=AdminUserPageRead,
    responses=responses(BadCursor, *ADMIN_ERRORS),
)
async def admin_list_users(
    session: SessionDep,
    admin: AdminUser,
    codec: CodecDep,
    query: Annotated[AdminUserListQuery, Query()],
) -> AdminUserPageRead:
    """Users, newest first: `q` matches the start of the email or username (any case),
    `role` narrows to one role. Pass `next_cursor` back as `cursor`."""
    page = await service.list_users(session, query, codec=codec)
    return AdminUserPageRead.model_validate(page, from_attributes=True)


@router.get(
    "/admin/users/{user_id}",
    response_model=AdminUserRead,
    responses=responses(UserNotFound, *ADMIN_ERRORS),
)
async def admin_get_user(session: SessionDep, admin: AdminUser, user_id: str) -> AdminUserRead:
    """A user with profile, preferences, and how many orders and enrollments they have."""
    detail = await service.get_user_detail(session, user_id)
    return AdminUserRead.from_detail(detail)


@router.patch(
    "/admin/users/{user_id}",
    response_model=AdminUserRead,
    responses=responses(UserNotFound, LastAdmin, AccountRemoved, *ADMIN_ERRORS),
)
async def admin_change_role(
    admin: WritingAdmin, writer: WriteTransactionDep, user_id: str, body: RoleUpdate
) -> AdminUserRead:
    """Change a user's role; it takes effect on their next request. The last admin cannot
    be demoted."""
    detail = await service.change_role(writer, user_id, body.role, acting_admin_id=admin.id)
    return AdminUserRead.from_detail(detail)


@router.delete(
    "/admin/users/{user_id}",
    response_model=AccountRemovalRead,
    responses=responses(UserNotFound, LastAdmin, *ADMIN_ERRORS),
)
async def admin_delete_user(
    admin: WritingAdmin, writer: WriteTransactionDep, user_id: str
) -> AccountRemovalRead:
    """Delete a user, or anonymise them if they have orders (as DELETE /me does). The last
    admin cannot be deleted."""
    outcome = await service.remove_account(writer, user_id, acting_admin_id=admin.id)
    return AccountRemovalRead(outcome=outcome)
