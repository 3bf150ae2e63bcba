"""Accounts' API shapes: bodies and answers in camelCase (as the catalogue's), never a
password hash anywhere."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from coursehub.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from coursehub.core.schemas import ApiModel, blank_as_none, reject_null
from coursehub.users.models import Role

if TYPE_CHECKING:
    from coursehub.users.repository import UserDetail

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,30}$"
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


class Removal(enum.StrEnum):
    """What removing an account did."""

    deleted = "deleted"
    anonymised = "anonymised"


class Theme(enum.StrEnum):
    light = "light"
    dark = "dark"
    system = "system"


class Language(enum.StrEnum):
    """The languages the store's interface is offered in (ISO 639-1): English and the
    major Indian languages."""

    en = "en"
    hi = "hi"
    bn = "bn"
    te = "te"
    mr = "mr"
    ta = "ta"
    ur = "ur"
    gu = "gu"
    kn = "kn"
    ml = "ml"
    or_ = "or"
    pa = "pa"
    as_ = "as"


SUPPORTED_LANGUAGES = tuple(language.value for language in Language)


def _strip_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _e164(value: str) -> str:
    """A phone number in international form, stored as E.164 (`+919876543210`)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(
            "must be a phone number in international form, e.g. +919876543210"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Email: syntax-checked, then lower-cased whole (the store compares emails lower-case).
Email = Annotated[
    EmailStr, BeforeValidator(_strip_lower), AfterValidator(str.lower), Field(max_length=254)
]
# Lower-cased before the check, so "Alice_1" is accepted as "alice_1".
Username = Annotated[
    str,
    BeforeValidator(_strip_lower),
    StringConstraints(pattern=USERNAME_PATTERN),
    Field(description="3–30 of a-z, 0-9, `_`, `.`, `-`; stored lower-case."),
]
NewPassword = Annotated[
    str, StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
]
# A password being checked, not set: legacy passwords may break today's rules, but a
# bound keeps a huge body from costing a long hash.
GivenPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
# Optional texts: blank means none. The length rules sit on the inner `str`, since a
# constraint on `str | None` itself would be applied to None and fail with a 500.
Name = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None,
    BeforeValidator(blank_as_none),
]
Bio = Annotated[
    Annotated[str, StringConstraints(max_length=2000)] | None, BeforeValidator(blank_as_none)
]
PhoneNumber = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(_e164)]
    | None,
    BeforeValidator(blank_as_none),
]


class AccountModel(ApiModel):
    """The accounts' API shapes."""


# --- the account -----------------------------------------------------------------------


class UserRead(AccountModel):
    id: str
    email: str  # not EmailStr: rows from the Node app are shown as stored
    username: str
    role: Role
    created_at: datetime
    updated_at: datetime


class UserCreate(AccountModel):
    email: Email
    username: Username
    password: NewPassword


class UserUpdate(AccountModel):
    """PATCH /me: only the fields sent change; the same rules and conflicts as sign-up."""

    email: Email | None = None
    username: Username | None = None

    @field_validator("email", "username", mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        return reject_null(value)


class AccountDelete(AccountModel):
    password: GivenPassword


# --- profile and preferences ------------------------------------------------------------


class ProfileRead(AccountModel):
    """All null until the first PUT."""

    first_name: str | None = None
    last_name: str | None = None
    bio: str | None = None
    phone_number: str | None = None
    updated_at: datetime | None = None


class ProfilePut(AccountModel):
    """The whole profile: a field left out is cleared."""

    first_name: Name = None
    last_name: Name = None
    bio: Bio = None
    phone_number: PhoneNumber = Field(
        default=None, description="International form; stored as E.164, e.g. +919876543210."
    )


class PreferencesRead(AccountModel):
    """The schema's defaults (light, en, notifications on) until changed."""

    theme: str = Theme.light.value
    language: str = Language.en.value
    notifications: bool = True


class PreferencesUpdate(AccountModel):
    theme: Theme | None = None
    language: Language | None = Field(
        default=None, description="ISO 639-1; one of " + ", ".join(SUPPORTED_LANGUAGES) + "."
    )
    # Strict: "yes", "off" or 1 are a client's mistake to report, not booleans to guess
    # (Prisma's Boolean refused them too).
    notifications: StrictBool | None = None

    @field_validator("theme", "language", "notifications", mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        return reject_null(value)


# --- administration ---------------------------------------------------------------------


class AdminUserListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    q: Annotated[
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] | None,
        BeforeValidator(blank_as_none),
    ] = Field(default=None, description="Prefix of the email or the username, any case.")
    role: Role | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class AdminUserSummaryRead(AccountModel):
    id: str
    email: str
    username: str
    role: Role
    created_at: datetime


class AdminUserRead(UserRead):
    profile: ProfileRead = Field(description="All null if the user never wrote one.")
    preferences: PreferencesRead = Field(description="The defaults if never changed.")
    orders_count: int
    enrollments_count: int

    @classmethod
    def from_detail(cls, detail: UserDetail) -> AdminUserRead:
        user = detail.user
        return cls(
            **UserRead.model_validate(user).model_dump(),
            profile=ProfileRead.model_validate(user.profile) if user.profile else ProfileRead(),
            preferences=(
                PreferencesRead.model_validate(user.preferences)
                if user.preferences
                else PreferencesRead()
            ),
            orders_count=detail.orders_count,
            enrollments_count=detail.enrollments_count,
        )


class AccountRemovalRead(AccountModel):
    outcome: Removal = Field(
        description="`deleted`, or `anonymised` when the account has orders (they are kept)."
    )


class RoleUpdate(AccountModel):
    role: Role


AdminUserPageRead = PageRead[AdminUserSummaryRead]
