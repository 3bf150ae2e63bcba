"""Coupons' API shapes: the admins' create/update/read, and the buyers' validate preview."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from coursehub.core.errors import FieldValueError
from coursehub.core.money import Money
from coursehub.core.pagination import PageQuery, PageRead
from coursehub.core.schemas import ApiModel, reject_null
from coursehub.core.timestamps import ApiDateTime
from coursehub.coupons.models import CouponType
from coursehub.orders.schemas import MAX_ITEMS, CouponCode, CourseId, distinct_course_ids

CODE_PATTERN = r"^[A-Za-z0-9_-]{3,32}$"  # checked before upper-casing

# Codes are stored upper case and matched case-insensitively: "save10" is SAVE10.
Code = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=CODE_PATTERN),
    Field(description="3–32 of A–Z, 0–9, `_` and `-`; stored upper case.", examples=["DIWALI25"]),
]
# A code as a buyer types it: matched case-insensitively, never rejected for its form
# (an ill-formed code is simply unknown).
Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2, description="Rupees, at most two decimals."),
]
CouponValue = Annotated[
    Decimal,
    Field(
        gt=0,
        max_digits=12,
        decimal_places=2,
        description="Percent (0 < value ≤ 100) for `percentage`; rupees (> 0) for `fixed`.",
    ),
]
MaxUses = Annotated[int, Field(ge=1, le=1_000_000_000, description="Null: unlimited.")]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class CouponsModel(ApiModel):
    """The coupons' API shapes."""


def check_percentage(type_: CouponType | None, value: Decimal | None) -> None:
    if type_ is CouponType.percentage and value is not None and value > 100:
        raise FieldValueError("value", "a percentage coupon's value must be at most 100")


class CouponCreate(CouponsModel):
    code: Code
    type: CouponType
    value: CouponValue
    max_discount: Amount | None = Field(
        default=None, description="Caps a percentage discount, in rupees."
    )
    min_purchase: Amount | None = Field(
        default=None, description="The least originalAmount the coupon applies to."
    )
    description: Description | None = None
    start_date: ApiDateTime
    end_date: ApiDateTime
    max_uses: MaxUses | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CouponCreate:
        # The fields named as a PATCH names them (service._check_consistent).
        check_percentage(self.type, self.value)
        if self.start_date >= self.end_date:
            raise FieldValueError("endDate", "must be after startDate")
        return self


_REQUIRED_ON_UPDATE = ("code", "type", "value", "start_date", "end_date")


class CouponUpdate(CouponsModel):
    """Only the fields sent change; the result must still hold together (checked against the
    stored coupon). Move endDate to end a coupon early."""

    code: Code | None = None
    type: CouponType | None = None
    value: CouponValue | None = None
    max_discount: Amount | None = None
    min_purchase: Amount | None = None
    description: Description | None = None
    start_date: ApiDateTime | None = None
    end_date: ApiDateTime | None = None
    max_uses: MaxUses | None = None

    @field_validator(*_REQUIRED_ON_UPDATE, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return reject_null(value)


class CouponRead(CouponsModel):
    id: str
    code: str
    type: CouponType
    # Money's two-decimal string: the column is DECIMAL(65,30), and a raw Decimal read back
    # from it would be "10.000000000000000000000000000000".
    value: Money = Field(description="Percent for `percentage`, rupees for `fixed`.")
    max_discount: Money | None
    min_purchase: Money | None
    description: str | None
    start_date: datetime
    end_date: datetime
    max_uses: int | None
    uses: int = Field(description="Orders using it that are not cancelled.")
    remaining_uses: int | None = Field(description="Null when unlimited.")
    total_discount: Money = Field(description="The discount given over all its uses.")
    created_by: str
    created_at: datetime
    updated_at: datetime


CouponPageRead = PageRead[CouponRead]


CouponListQuery = PageQuery


class CouponValidate(CouponsModel):
    code: CouponCode
    course_ids: Annotated[list[CourseId], Field(min_length=1, max_length=MAX_ITEMS)]

    _distinct = field_validator("course_ids")(distinct_course_ids)


class CouponPreviewRead(CouponsModel):
    code: str
    type: CouponType
    value: Money
    original_amount: Money
    discount: Money
    amount: Money
