"""Checkout: turning a buyer's courses (and coupon) into an order, race-free.

One transaction, in this order, holding locks as briefly as possible:

1. A per-user advisory lock: every rule about the buyer's own history (courses in
   another open order, one use per coupon, one order per Idempotency-Key) is read
   after it, so two checkouts of the same user cannot both pass a check. Other
   users never wait on it. In the same statement the buyer's row, as their token found
   it, FOR KEY SHARE: an account removal in progress is waited for and then answered
   401, never an order on a removed account (nor a foreign-key failure, a 500).
2. The Idempotency-Key's order, if one exists: returned as it is.
3. The courses, with the buyer's enrollments and open orders of them, and the coupon
   with whether the buyer has used it (a usage whose order is not cancelled): one
   query, with or without a coupon. Each item snapshots its course's price half-up to
   the paisa, and originalAmount is the sum of those snapshots (so it always equals
   the sum of the items).
4. The coupon's rules, courses first (an unknown course is reported before an unknown
   coupon): its window and minimum purchase are checked, the discount computed. A
   coupon on a free order (originalAmount 0), or one whose discount comes to 0.00, is
   refused: it would take nothing off yet spend a use.
5. Only for a coupon with a maxUses limit, as late as possible: a use is claimed
   under the coupon's claim lock, held until the commit. Far from the limit the lock is
   shared, and a bounded count of all its usages shows there is room even if every
   transaction in progress on the server took a use; for its last uses the lock is
   exclusive and its uses (usages of orders not cancelled) are counted exactly
   (coupons/repository.py, "claiming a use", says why no use is sold twice). The
   coupon's terms are read again with the claim: changed by an admin meanwhile, the
   new ones are checked and applied.
   Unlimited coupons (the common case) take no claim lock. A use starts counting
   only here, under that lock; one stops counting when its order is cancelled, which
   needs no lock: a count can then only be too high for a moment, never too low.
6. The order, items and usage in one statement. A zero amount completes at once:
   paymentStatus paid, paymentMethod `free`, enrollments granted. With a coupon read as
   unlimited, the statement writes only if it still is (its row held FOR KEY SHARE, as
   the usage's foreign key holds it anyway): an admin who gave it a limit meanwhile held
   the row FOR UPDATE, and the checkout starts over once, claiming a use as in 5
   (repository `_insert_order_statement`).

Nothing is written before every rule has passed, and everything is written by one
statement, so a refused checkout leaves nothing behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.catalog.models import Course
from coursehub.core.database import violated_constraint
from coursehub.core.errors import Unauthorized, ValidationFailed
from coursehub.core.models import new_id, utcnow
from coursehub.core.money import CURRENCY, ZERO, to_paise
from coursehub.core.sql import Writer
from coursehub.coupons import repository as coupons_repository
from coursehub.coupons import rules as coupon_rules
from coursehub.coupons.errors import CouponNotFound
from coursehub.coupons.repository import CouponOffer, CouponTerms
from coursehub.enrollments.service import grant_enrollments_for_order
from coursehub.orders import repository
from coursehub.orders.errors import (
    AlreadyEnrolled,
    CheckoutConflict,
    CourseInOpenOrder,
    CourseUnavailable,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    OrderNumberExhausted,
)
from coursehub.orders.metadata import metadata_object
from coursehub.orders.models import Order, OrderStatus, PaymentStatus
from coursehub.orders.numbers import new_order_number
from coursehub.orders.placed import PlacedItem, PlacedOrder, PlacedUsage, SoldCourse
from coursehub.orders.repository import InsertOutcome
from coursehub.orders.schemas import FREE_PAYMENT_METHOD, MAX_ITEMS
from coursehub.users.models import User

NUMBER_ATTEMPTS = 5
IDEMPOTENCY_KEY_MAX_LENGTH = 255
ITEM_FOREIGN_KEY = "OrderItem_courseId_fkey"


@dataclass(frozen=True)
class CheckoutResult:
    order: PlacedOrder | Order  # the ORM's for a replay: the order as it is now
    replayed: bool  # True: an earlier request with the same Idempotency-Key made it


async def place_order(
    writer: Writer,
    *,
    user: User,
    course_ids: list[str],
    coupon_code: str | None,
    payment_method: str | None,
    idempotency_key: str | None,
) -> PlacedOrder | Order:
    """Place an order for `course_ids` (see the module's docstring). The order returned has
    its items (with their courses) and coupon usage, ready for `OrderRead`."""
    result = await checkout(
        writer,
        user=user,
        course_ids=course_ids,
        coupon_code=coupon_code,
        payment_method=payment_method,
        idempotency_key=idempotency_key,
    )
    return result.order


def _check_request(course_ids: Sequence[str], idempotency_key: str | None) -> None:
    # The API's schema says the same; this guards every other caller (CLI, benchmark).
    if not 1 <= len(course_ids) <= MAX_ITEMS:
        raise ValidationFailed(f"an order holds 1 to {MAX_ITEMS} courses")
    if len(set(course_ids)) != len(course_ids):
        raise ValidationFailed("each course may appear only once in an order")
    if idempotency_key is not None and not (
        1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_LENGTH
        and idempotency_key.isascii()
        and idempotency_key.isprintable()
    ):
        raise InvalidIdempotencyKey(
            f"the Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII "
            "characters"
        )


def request_fingerprint(
    course_ids: Sequence[str], coupon_code: str | None, payment_method: str | None
) -> str:
    """What a retry must repeat for its Idempotency-Key to return the first order."""
    body = {"courseIds": sorted(course_ids), "couponCode": coupon_code, "method": payment_method}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _normalise_code(coupon_code: str | None) -> str | None:
    if coupon_code is None:
        return None
    code = coupon_code.strip().upper()
    return code or None


def item_prices(courses: Sequence[Course | SoldCourse]) -> list[Decimal]:
    """Each course's price as its OrderItem snapshots it: half-up to the paisa. A price
    with more decimals exists only in data adopted from the Node app (DECIMAL(65,30));
    rounding each item, and summing the rounded items into originalAmount, keeps
    originalAmount = the sum of the items."""
    return [to_paise(course.price) for course in courses]


async def load_sellable_courses(session: AsyncSession, course_ids: Sequence[str]) -> list[Course]:
    """The published courses with these ids, in the order asked; 422 naming any other."""
    courses = await repository.load_courses(session, course_ids)
    _check_all_found(course_ids, {course.id for course in courses})
    by_id = {course.id: course for course in courses}
    return [by_id[course_id] for course_id in course_ids]


def _check_all_found(course_ids: Sequence[str], found: set[str]) -> None:
    missing = [course_id for course_id in course_ids if course_id not in found]
    if missing:
        # Drafts and unknown ids alike: a draft is not for sale, nor known to buyers.
        raise CourseUnavailable(
            "not for sale (no such published course): " + ", ".join(missing),
            extra={"courseIds": missing},
        )


class _CouponGainedLimit(Exception):
    """The coupon, read without a use limit, was given one before the order's insert (or
    was deleted), which therefore wrote nothing (`repository.insert_order`)."""


async def checkout(
    writer: Writer,
    *,
    user: User,
    course_ids: Sequence[str],
    coupon_code: str | None,
    payment_method: str | None,
    idempotency_key: str | None,
) -> CheckoutResult:
    attempt = functools.partial(
        _checkout_once,
        writer,
        user=user,
        course_ids=course_ids,
        coupon_code=coupon_code,
        payment_method=payment_method,
        idempotency_key=idempotency_key,
    )
    try:
        return await attempt()
    except _CouponGainedLimit:
        # Nothing was written: once more from the coupon's read, which now finds its limit
        # and claims a use as for any limited coupon. An admin changing it back and forth
        # within these milliseconds would make the second attempt raise too: a conflict.
        # The first attempt's statement still holds the coupon's row FOR KEY SHARE (a row
        # locked while waiting stays locked when the re-check drops it), so a second change
        # of the coupon arriving before this claim (it holds the claim lock and wants the
        # row) deadlocks with it: PostgreSQL ends one of the two, a 409 either way, nothing
        # written. Two changes of one coupon within milliseconds of each other: left so.
        try:
            return await attempt()
        except _CouponGainedLimit:
            raise CheckoutConflict(
                "the coupon's use limit changed while this order was placed; please try again"
            ) from None


async def _checkout_once(
    writer: Writer,
    *,
    user: User,
    course_ids: Sequence[str],
    coupon_code: str | None,
    payment_method: str | None,
    idempotency_key: str | None,
) -> CheckoutResult:
    _check_request(course_ids, idempotency_key)
    code = _normalise_code(coupon_code)
    # Only a request with an Idempotency-Key is ever compared with another.
    fingerprint = (
        request_fingerprint(course_ids, code, payment_method)
        if idempotency_key is not None
        else None
    )
    now = utcnow()

    if not await repository.lock_user_checkouts(
        writer, user_id=user.id, password_hash=user.password
    ):
        # Removed (or its password changed) since the request's token was checked: as for
        # any request after that.
        raise Unauthorized("the access token is no longer valid; sign in again")

    if idempotency_key is not None:
        earlier = await repository.find_order_id_by_idempotency_key(
            writer, user_id=user.id, key=idempotency_key
        )
        if earlier is not None:
            order_id, metadata = earlier
            if metadata_object(metadata).get("requestFingerprint") != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used for an order of other courses, "
                    "coupon or payment method; use a new key for a new order"
                )
            placed = await repository.get_order_for_read(writer, order_id)
            assert placed is not None, "the order was found a moment ago, under the lock"
            return CheckoutResult(order=placed, replayed=True)

    loaded = await repository.load_courses_for_checkout(
        writer, user_id=user.id, course_ids=course_ids, coupon_code=code
    )
    _check_all_found(course_ids, {row.course.id for row in loaded.courses})
    by_id = {row.course.id: row for row in loaded.courses}
    ordered = [by_id[course_id] for course_id in course_ids]
    enrolled = [row.course.id for row in ordered if row.enrolled]
    if enrolled:
        raise AlreadyEnrolled(
            "you are already enrolled in: " + ", ".join(enrolled), extra={"courseIds": enrolled}
        )
    held = [row for row in ordered if row.open_order_number is not None]
    if held:
        number = held[0].open_order_number
        raise CourseInOpenOrder(
            f"order {number} of yours is still pending with "
            + ", ".join(row.course.id for row in held)
            + "; pay for it or cancel it first",
            extra={"orderNumber": number, "courseIds": [row.course.id for row in held]},
        )

    courses = [row.course for row in ordered]
    prices = item_prices(courses)
    original = sum(prices, start=ZERO)
    discount = ZERO
    coupon: CouponOffer | None = None
    use_claimed = False
    if code is not None:
        if loaded.coupon is None:
            raise CouponNotFound(f"there is no coupon {code}")
        coupon, used_by_user = loaded.coupon
        coupon_rules.check_applies(
            coupon, original_amount=original, now=now, used_by_user=used_by_user
        )
        if coupon.max_uses is not None:
            terms = await _claim_limited_use(writer, coupon)
            use_claimed = True
            if terms != CouponTerms.of(coupon):
                # An admin changed the coupon between our read and our claim (which waited
                # for the change): its new terms are the ones that apply.
                coupon = coupon.with_terms(terms)
                coupon_rules.check_applies(
                    coupon, original_amount=original, now=now, used_by_user=used_by_user
                )
        discount = coupon_rules.discount_to_apply(coupon, original)
    amount = max(ZERO, to_paise(original - discount))

    free = amount == ZERO
    order = PlacedOrder(
        id=new_id(),
        order_number="",  # given by `_insert`
        user_id=user.id,
        # A zero amount completes at once (pending → processing → completed, as a paid
        # order's does, `transitions.complete_order`), paid by nobody.
        status=OrderStatus.completed if free else OrderStatus.pending,
        payment_status=PaymentStatus.paid if free else PaymentStatus.pending,
        payment_method=FREE_PAYMENT_METHOD if free else payment_method,
        amount=amount,
        original_amount=original,
        currency=CURRENCY,
        metadata_=(
            {"idempotencyKey": idempotency_key, "requestFingerprint": fingerprint}
            if idempotency_key is not None
            else None
        ),
        created_at=now,
        updated_at=now,
        items=[
            PlacedItem(id=new_id(), course_id=course.id, price=price, course=course)
            for course, price in zip(courses, prices, strict=True)
        ],
        coupon_usage=(
            PlacedUsage(id=new_id(), coupon_id=coupon.id, discount=discount, coupon=coupon)
            if coupon is not None
            else None
        ),
    )
    await _insert(writer, order, use_claimed=use_claimed)
    if free:
        await grant_enrollments_for_order(
            writer, user_id=user.id, order_id=order.id, course_ids=[c.id for c in courses]
        )
    return CheckoutResult(order=order, replayed=False)


class _ClaimHints:
    """What this process has learnt about claiming limited coupons' uses, to skip a shared
    claim bound to fail (coupons/repository.py): it would take a savepoint, the shared
    lock and a count, give them back, and only then queue for the exclusive lock.

    `bound`: K as the server last reported it; a coupon whose maxUses is below it can
    never be claimed shared (at K, only while it has no usage at all). `near_limit`:
    coupons a shared claim last found too near their limit, until an exclusive claim
    finds them far from it again (their limit raised, orders cancelled). Hints only:
    each claim checks afresh under its lock."""

    MAX_NEAR_LIMIT = 1024

    def __init__(self) -> None:
        self.bound: int | None = None
        self.near_limit: set[str] = set()

    def try_shared(self, coupon: CouponOffer) -> bool:
        assert coupon.max_uses is not None
        if self.bound is not None and coupon.max_uses < self.bound:
            return False
        return coupon.id not in self.near_limit

    def shared_failed(self, coupon_id: str) -> None:
        if len(self.near_limit) >= self.MAX_NEAR_LIMIT:
            self.near_limit.clear()
        self.near_limit.add(coupon_id)

    def exclusive_found(self, coupon_id: str, *, usages: int, max_uses: int) -> None:
        if self.bound is not None and usages + self.bound <= max_uses:
            self.near_limit.discard(coupon_id)

    def forget(self) -> None:
        self.bound = None
        self.near_limit.clear()


CLAIM_HINTS = _ClaimHints()


async def _claim_limited_use(writer: Writer, coupon: CouponOffer) -> CouponTerms:
    """Claim one of the limited coupon's uses, held until the commit, so that no more than
    maxUses count however many checkouts run at once (coupons/repository.py): far from the
    limit under the shared claim lock (the checkouts of one coupon do not queue), for its
    last uses under the exclusive one, after an exact count. Returns the coupon's terms as
    read under the lock."""
    if CLAIM_HINTS.try_shared(coupon):
        shared = await coupons_repository.claim_use_shared(writer, coupon.id)
        if shared.bound is not None:
            CLAIM_HINTS.bound = shared.bound
        if shared.claimed:
            assert shared.terms is not None
            return shared.terms
        if not shared.found:
            raise CouponNotFound(f"there is no coupon {coupon.code}")
        CLAIM_HINTS.shared_failed(coupon.id)
    await coupons_repository.lock_claims(writer, coupon.id)
    room = await coupons_repository.claim_room(writer, coupon.id)
    if not room.found:
        raise CouponNotFound(f"there is no coupon {coupon.code}")
    assert room.terms is not None
    if room.max_uses is None:
        return room.terms  # the limit was removed meanwhile
    CLAIM_HINTS.exclusive_found(coupon.id, usages=room.usages, max_uses=room.max_uses)
    # Fewer usages than maxUses at all (an index-only count): fewer that count. Only with
    # more (some of cancelled orders, or the coupon used up) is each usage's order read.
    if room.usages < room.max_uses:
        return room.terms
    uses = await coupons_repository.count_uses(writer, coupon.id)
    coupon_rules.check_not_used_up(coupon, max_uses=room.max_uses, uses=uses)
    return room.terms


async def _insert(writer: Writer, order: PlacedOrder, *, use_claimed: bool) -> None:
    try:
        for _ in range(NUMBER_ATTEMPTS):
            order.order_number = new_order_number(order.created_at)
            outcome = await repository.insert_order(writer, order=order, use_claimed=use_claimed)
            if outcome is InsertOutcome.inserted:
                return
            if outcome is InsertOutcome.coupon_gained_limit:
                raise _CouponGainedLimit
    except IntegrityError as exc:
        # A course deleted by an admin between our read and our insert. (A coupon deleted
        # meanwhile is not a foreign-key failure: the insert holds the coupon's row, and
        # finding it gone writes nothing and reads it again, as `_CouponGainedLimit`.)
        if violated_constraint(exc) == ITEM_FOREIGN_KEY:
            raise CourseUnavailable("a course of this order was just removed") from None
        raise
    raise OrderNumberExhausted("could not allocate an order number; please try again")
