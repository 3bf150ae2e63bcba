"""The catalogue's API shapes: bodies in camelCase (as the DB fields), query parameters as named
in the API (`min_price`), and the pages and courses it answers with."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from coursehub.catalog.enums import CourseLevel, CourseSort
from coursehub.core.money import Money
from coursehub.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRead
from coursehub.core.schemas import ApiModel, blank_as_none, reject_null

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
SLUG_MAX_LENGTH = 200

_http_url = TypeAdapter(HttpUrl)


def _check_http_url(value: str) -> str:
    """An http(s) URL, kept as the admin wrote it (pydantic would normalise it)."""
    _http_url.validate_python(value)
    return value


def _stored_features(value: Any) -> Any:
    """`features` as stored: a text[] the Node app (or a hand edit) may have left NULL, or
    with NULL elements, which the store never writes; both read as if absent."""
    if value is None:
        return []
    if isinstance(value, list):
        return [feature for feature in value if feature is not None]
    return value


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN, max_length=SLUG_MAX_LENGTH)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Thumbnail = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2048), AfterValidator(_check_http_url)
]
Duration = Annotated[int, Field(ge=1, le=100_000, description="Minutes.")]
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2, description="Rupees, at most two decimals."),
]
Feature = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Features = Annotated[list[Feature], Field(max_length=30)]
Category = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=60)
]
SearchText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class CatalogModel(ApiModel):
    """The catalogue's API shapes."""


class CourseCreate(CatalogModel):
    title: Title
    slug: Slug | None = Field(
        default=None, description="Made from the title (and made unique) when left out."
    )
    description: Description | None = None
    thumbnail: Thumbnail | None = None
    duration: Duration
    price: Price
    features: Features = []
    category: Category
    level: CourseLevel
    # Strict: "yes" or 1 is a client's mistake, not a flag to guess (a course published by
    # accident); Prisma's Boolean refused them too.
    is_published: StrictBool = False
    is_featured: StrictBool = False


# Columns that are NOT NULL: a PATCH may leave them out, but not set them to null.
_REQUIRED_ON_UPDATE = (
    "title",
    "slug",
    "duration",
    "price",
    "features",
    "category",
    "level",
    "is_published",
    "is_featured",
)


class CourseUpdate(CatalogModel):
    """Only the fields sent are changed (`exclude_unset`); publishing and featuring are here."""

    title: Title | None = None
    slug: Slug | None = None
    description: Description | None = None
    thumbnail: Thumbnail | None = None
    duration: Duration | None = None
    price: Price | None = None
    features: Features | None = None
    category: Category | None = None
    level: CourseLevel | None = None
    is_published: StrictBool | None = None
    is_featured: StrictBool | None = None

    @field_validator(*_REQUIRED_ON_UPDATE, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return reject_null(value)


class CourseSummaryRead(CatalogModel):
    """A course in a list."""

    id: str
    title: str
    slug: str
    price: Money
    duration: int
    category: str
    level: str
    is_featured: bool
    thumbnail: str | None


class AdminCourseSummaryRead(CourseSummaryRead):
    is_published: bool
    created_at: datetime


class CourseRead(CatalogModel):
    """A course, whole."""

    id: str
    title: str
    slug: str
    description: str | None
    thumbnail: str | None
    duration: int
    price: Money
    features: Annotated[list[str], BeforeValidator(_stored_features)]
    category: str
    level: str
    is_published: bool
    is_featured: bool
    created_at: datetime
    updated_at: datetime


class AdminCourseRead(CourseRead):
    created_by: str


class CategoryRead(CatalogModel):
    category: str
    count: int = Field(description="Published courses in the category.")


class CategoryListRead(CatalogModel):
    items: list[CategoryRead]


CoursePageRead = PageRead[CourseSummaryRead]
AdminCoursePageRead = PageRead[AdminCourseSummaryRead]


class CourseListQuery(BaseModel):
    """GET /courses' query parameters. `sort` defaults to relevance with `q`, else newest."""

    model_config = ConfigDict(extra="ignore")

    category: Annotated[Category | None, BeforeValidator(blank_as_none)] = None
    level: CourseLevel | None = None
    featured: bool | None = None
    free: bool | None = Field(default=None, description="true: price 0; false: priced courses.")
    min_price: Price | None = None
    max_price: Price | None = None
    q: Annotated[SearchText | None, BeforeValidator(blank_as_none)] = Field(
        default=None, description="Full-text search over title, description and features."
    )
    sort: CourseSort | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")

    @field_validator("max_price")
    @classmethod
    def _range_in_order(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        low = info.data.get("min_price")
        if value is not None and low is not None and value < low:
            raise ValueError("must not be below min_price")
        return value

    @field_validator("sort")
    @classmethod
    def _relevance_needs_q(
        cls, value: CourseSort | None, info: ValidationInfo
    ) -> CourseSort | None:
        if value is CourseSort.relevance and info.data.get("q") is None:
            raise ValueError("relevance sorting needs a search query (q)")
        return value

    @property
    def effective_sort(self) -> CourseSort:
        if self.sort is not None:
            return self.sort
        return CourseSort.relevance if self.q is not None else CourseSort.newest


class AdminCourseListQuery(CourseListQuery):
    published: bool | None = Field(default=None, description="Leave out for drafts and published.")
