"""Row generators for the bulk benchmark dataset: realistic, and consistent by the store's rules.

Every row is a tuple in the column order of its `*_COLUMNS`, ready for COPY.
Times are naive UTC at millisecond precision (TIMESTAMP(3)), ids are uuid4 and
`updatedAt` is set here, as the application sets them.

The rules the orders keep (the same ones checkout and payments enforce):
- originalAmount = Σ items' prices (each the course's price, snapshotted);
  discount by the coupon rule, half-up to the paisa; amount = original − discount;
- a coupon is used within its dates, at or above its minPurchase, at most once per
  user, and no more than maxUses times by orders that are not cancelled;
- status and paymentStatus agree (completed/paid, refunded/refunded,
  cancelled/failed or cancelled/pending, pending or processing/pending); amount 0
  is completed at once, paymentMethod `free`; pending and processing orders are
  younger than the pending-order expiry (30 minutes);
- completed orders have one active enrollment per item, refunded ones one
  revoked enrollment per item; a user never orders a course twice, so no
  enrollment or pending order overlaps another.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from coursehub.core.models import new_id
from coursehub.core.money import ZERO, to_paise
from coursehub.coupons.models import CouponType
from coursehub.coupons.rules import discount_for

Row = tuple[Any, ...]

USER_COLUMNS = ("id", "email", "username", "password", "role", "createdAt", "updatedAt")
PROFILE_COLUMNS = (
    "id",
    "userId",
    "firstName",
    "lastName",
    "bio",
    "phoneNumber",
    "createdAt",
    "updatedAt",
)
PREFERENCE_COLUMNS = (
    "id",
    "userId",
    "theme",
    "language",
    "notifications",
    "createdAt",
    "updatedAt",
)
COURSE_COLUMNS = (
    "id",
    "title",
    "slug",
    "description",
    "thumbnail",
    "duration",
    "price",
    "features",
    "category",
    "level",
    "isPublished",
    "isFeatured",
    "createdBy",
    "createdAt",
    "updatedAt",
)
COUPON_COLUMNS = (
    "id",
    "code",
    "type",
    "value",
    "maxDiscount",
    "minPurchase",
    "description",
    "startDate",
    "endDate",
    "maxUses",
    "createdBy",
    "createdAt",
    "updatedAt",
)
ORDER_COLUMNS = (
    "id",
    "orderNumber",
    "userId",
    "status",
    "amount",
    "originalAmount",
    "paymentMethod",
    "paymentStatus",
    "currency",
    "metadata",
    "createdAt",
    "updatedAt",
)
ITEM_COLUMNS = ("id", "orderId", "courseId", "price", "createdAt")
USAGE_COLUMNS = ("id", "couponId", "userId", "orderId", "discount", "createdAt")
ENROLLMENT_COLUMNS = (
    "id",
    "userId",
    "courseId",
    "orderId",
    "status",
    "progress",
    "completedAt",
    "createdAt",
    "updatedAt",
)

FIRST_NAMES = (
    "aarav", "vivaan", "aditya", "vihaan", "arjun", "sai", "reyansh", "ayaan", "krishna",
    "ishaan", "rohan", "kabir", "aryan", "dhruv", "karan", "rahul", "amit", "vikram",
    "ananya", "diya", "aadhya", "saanvi", "pari", "anika", "navya", "myra", "sara", "priya",
    "kavya", "isha", "meera", "neha", "pooja", "riya", "sneha", "tanvi", "shreya", "lakshmi",
    "fatima", "zoya", "harpreet", "gurpreet", "joseph", "maria", "thomas", "anjali",
)  # fmt: skip
LAST_NAMES = (
    "sharma", "verma", "gupta", "singh", "kumar", "patel", "shah", "mehta", "iyer", "nair",
    "menon", "reddy", "rao", "naidu", "das", "bose", "chatterjee", "banerjee", "mukherjee",
    "ghosh", "joshi", "kulkarni", "deshpande", "pillai", "khan", "ahmed", "fernandes",
    "dsouza", "gill", "sandhu", "agarwal", "jain", "malhotra", "kapoor", "chopra", "saxena",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.in", "example.org", "example.net")
BIOS = (
    "Software engineer in Bengaluru, learning data science on weekends.",
    "Final-year B.Tech student preparing for placements.",
    "Product manager moving into UX research.",
    "Small-business owner learning digital marketing.",
    "Teacher exploring programming for my classroom.",
    None,
    None,
)
THEMES = ("light", "dark", "system")
LANGUAGES = ("en", "en", "en", "hi", "bn", "te", "mr", "ta", "gu", "kn", "ml")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "programming": ("Python", "Java", "Go", "Rust", "C++", "Kotlin", "Functional Programming"),
    "web development": ("React", "Node.js", "Django", "Next.js", "Vue", "FastAPI", "CSS"),
    "data science": ("Pandas", "Statistics", "Power BI", "SQL", "Tableau", "Data Analysis"),
    "machine learning": ("Deep Learning", "NLP", "Computer Vision", "MLOps", "PyTorch"),
    "design": ("Figma", "UI Design", "UX Research", "Illustrator", "Typography"),
    "marketing": ("SEO", "Social Media Marketing", "Email Marketing", "Google Ads"),
    "business": ("Excel", "Project Management", "Entrepreneurship", "Negotiation"),
    "finance": ("Stock Market Investing", "Accounting", "Personal Finance", "GST"),
    "devops": ("Docker", "Kubernetes", "AWS", "Terraform", "Linux", "CI/CD"),
    "mobile development": ("Flutter", "Android", "SwiftUI", "React Native"),
}
TITLE_PATTERNS = (
    "The Complete {topic} Course",
    "{topic} for Beginners",
    "{topic} Masterclass",
    "Practical {topic}: Hands-On Projects",
    "Advanced {topic}",
    "{topic} in 30 Days",
    "Mastering {topic}",
    "{topic} Bootcamp",
    "Learn {topic} the Right Way",
)
LEVELS = ("beginner", "intermediate", "advanced", "all-levels")
PRICES = tuple(
    Decimal(p)
    for p in (
        "499.00", "699.00", "799.00", "999.00", "1299.00", "1499.00", "1999.00", "2499.00",
        "2999.00", "3499.00", "3999.00", "4499.00", "4999.00", "5999.00", "7999.00",
    )
)  # fmt: skip
FEATURES = (
    "Lifetime access",
    "Certificate of completion",
    "Downloadable resources",
    "Hands-on projects",
    "Quizzes after every module",
    "Access on mobile and TV",
    "Doubt-clearing sessions",
    "Assignments with solutions",
)
PAYMENT_METHODS = ("upi", "upi", "card", "card", "netbanking", "wallet")
REFUND_REASONS = (
    "Course content did not match the description",
    "Bought by mistake",
    "Duplicate purchase",
)
FAILURE_REASONS = ("card declined", "UPI request expired", "bank server unavailable")
ALPHABET = string.ascii_uppercase.replace("O", "").replace("I", "") + "23456789"

# Order states, with their weights among orders that cost something.
STATES = (
    ("completed", "paid", 70),
    ("refunded", "refunded", 4),
    ("cancelled", "failed", 8),
    ("cancelled", "pending", 8),
    ("pending", "pending", 6),
    ("processing", "pending", 4),
)
ITEM_COUNTS = ((1, 60), (2, 25), (3, 10), (4, 5))
COUPON_SHARE = 0.3
PENDING_WINDOW = timedelta(minutes=25)  # younger than the 30-minute pending expiry


def millis(moment: datetime) -> datetime:
    """Naive UTC with millisecond precision, as TIMESTAMP(3) stores it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass
class BulkUser:
    id: str
    created_at: datetime
    held: set[str] = field(default_factory=set)  # courses ordered; never ordered twice
    coupons: set[str] = field(default_factory=set)  # coupons used; once each


@dataclass(frozen=True)
class PoolCourse:
    id: str
    price: Decimal
    created_at: datetime


@dataclass
class BulkCoupon:
    id: str
    type: CouponType
    value: Decimal
    max_discount: Decimal | None
    min_purchase: Decimal | None
    max_uses: int | None
    start: datetime
    end: datetime
    uses: int = 0  # by orders that are not cancelled


@dataclass
class OrderChunk:
    orders: list[Row] = field(default_factory=list)
    items: list[Row] = field(default_factory=list)
    usages: list[Row] = field(default_factory=list)
    enrollments: list[Row] = field(default_factory=list)


class BulkGenerator:
    """Makes the rows of one bulk run. `tag` (5 random characters) goes into every email,
    username, slug, coupon code and order number, so runs never collide."""

    def __init__(self, *, tag: str, now: datetime, rng: random.Random, password_hash: str):
        self.tag = tag
        self.now = millis(now)
        self.rng = rng
        self.password_hash = password_hash
        self.order_numbers: set[str] = set()
        self._state_names = [s[:2] for s in STATES]
        self._state_weights = [s[2] for s in STATES]
        self._item_counts = [c for c, _ in ITEM_COUNTS]
        self._item_weights = [w for _, w in ITEM_COUNTS]

    def _moment_between(self, start: datetime, end: datetime) -> datetime:
        span = int((end - start).total_seconds() * 1000)
        return start + timedelta(milliseconds=self.rng.randint(0, max(0, span)))

    # --- users ------------------------------------------------------------------------

    def users(
        self, start: int, count: int
    ) -> tuple[list[Row], list[Row], list[Row], list[BulkUser]]:
        rng = self.rng
        users: list[Row] = []
        profiles: list[Row] = []
        preferences: list[Row] = []
        made: list[BulkUser] = []
        oldest = self.now - timedelta(days=730)
        for i in range(start, start + count):
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            user_id = new_id()
            created = self._moment_between(oldest, self.now - timedelta(hours=1))
            users.append(
                (
                    user_id,
                    f"{first}.{last}+{self.tag}.{i}@{rng.choice(EMAIL_DOMAINS)}",
                    f"{first}_{self.tag}{i}",
                    self.password_hash,
                    "user",
                    created,
                    created,
                )
            )
            made.append(BulkUser(user_id, created))
            if rng.random() < 0.7:
                updated = self._moment_between(created, self.now)
                phone = f"+91{rng.choice('6789')}{rng.randrange(10**9):09d}"
                profiles.append(
                    (
                        new_id(),
                        user_id,
                        first.title(),
                        last.title(),
                        rng.choice(BIOS),
                        phone if rng.random() < 0.6 else None,
                        created,
                        updated,
                    )
                )
            if rng.random() < 0.5:
                preferences.append(
                    (
                        new_id(),
                        user_id,
                        rng.choice(THEMES),
                        rng.choice(LANGUAGES),
                        rng.random() < 0.8,
                        created,
                        created,
                    )
                )
        return users, profiles, preferences, made

    # --- catalogue ----------------------------------------------------------------------

    def courses(
        self, start: int, count: int, *, admin_id: str
    ) -> tuple[list[Row], list[PoolCourse]]:
        from coursehub.catalog.service import slug_from_title

        rng = self.rng
        rows: list[Row] = []
        published: list[PoolCourse] = []
        oldest = self.now - timedelta(days=1000)
        categories = list(CATEGORIES)
        for i in range(start, start + count):
            category = rng.choice(categories)
            topic = rng.choice(CATEGORIES[category])
            title = rng.choice(TITLE_PATTERNS).format(topic=topic)
            slug = f"{slug_from_title(title)}-{self.tag}-{i}"
            price = Decimal("0.00") if rng.random() < 0.05 else rng.choice(PRICES)
            is_published = rng.random() < 0.9
            created = self._moment_between(oldest, self.now - timedelta(days=1))
            course_id = new_id()
            rows.append(
                (
                    course_id,
                    title,
                    slug,
                    f"{title}: a {category} course on {topic}, from the basics to real "
                    f"projects, with exercises and reviewed assignments.",
                    f"https://images.coursehub.dev/courses/{slug}.jpg",
                    rng.randrange(60, 3000, 15),
                    price,
                    rng.sample(FEATURES, rng.randint(2, 5)),
                    category,
                    rng.choice(LEVELS),
                    is_published,
                    is_published and rng.random() < 0.1,
                    admin_id,
                    created,
                    self._moment_between(created, self.now),
                )
            )
            if is_published:
                published.append(PoolCourse(course_id, price, created))
        return rows, published

    def coupons(
        self, count: int, *, admin_id: str, orders: int
    ) -> tuple[list[Row], list[BulkCoupon]]:
        rng = self.rng
        rows: list[Row] = []
        made: list[BulkCoupon] = []
        start = self.now - timedelta(days=800)
        end = self.now + timedelta(days=365)
        for n in range(count):
            percentage = n % 3 != 2
            if percentage:
                value = Decimal(rng.choice((10, 15, 20, 25, 30, 40, 50)))
                cap = Decimal(rng.choice((300, 500, 1000, 2000))) if n % 2 == 0 else None
            else:
                value = Decimal(rng.choice((100, 200, 250, 500, 750, 1000)))
                cap = None
            minimum = Decimal(rng.choice((999, 1999, 2999))) if n % 4 == 1 else None
            # Some limited coupons, with room for a realistic share of the orders.
            limit = max(5, orders // 50) if n % 5 == 3 else None
            coupon = BulkCoupon(
                id=new_id(),
                type=CouponType.percentage if percentage else CouponType.fixed,
                value=value,
                max_discount=cap,
                min_purchase=minimum,
                max_uses=limit,
                start=start,
                end=end,
            )
            made.append(coupon)
            description = (
                (f"{value}% off" if percentage else f"₹{value} off")
                + (f", up to ₹{cap}" if cap else "")
                + (f", on ₹{minimum} or more" if minimum else "")
            )
            rows.append(
                (
                    coupon.id,
                    f"BULK{self.tag.upper()}{n:02d}",
                    coupon.type.value,
                    value,
                    cap,
                    minimum,
                    description,
                    start,
                    end,
                    limit,
                    admin_id,
                    start,
                    start,
                )
            )
        return rows, made

    # --- orders -----------------------------------------------------------------------

    def _order_number(self, created: datetime) -> str:
        while True:
            suffix = "".join(self.rng.choices(ALPHABET, k=4))
            number = f"CH-{created:%Y%m%d}-{self.tag.upper()}{suffix}"
            if number not in self.order_numbers:
                self.order_numbers.add(number)
                return number

    def _pick_courses(self, user: BulkUser, pool: Sequence[PoolCourse], k: int) -> list[PoolCourse]:
        chosen: list[PoolCourse] = []
        ids: set[str] = set()
        for _ in range(k * 8):  # bounded: a user who holds most of a small pool gets fewer
            course = pool[self.rng.randrange(len(pool))]
            if course.id in user.held or course.id in ids:
                continue
            chosen.append(course)
            ids.add(course.id)
            if len(chosen) == k:
                break
        return chosen

    def orders(
        self,
        count: int,
        *,
        buyers: Sequence[BulkUser],
        pool: Sequence[PoolCourse],
        coupons: Sequence[BulkCoupon],
    ) -> OrderChunk:
        rng = self.rng
        chunk = OrderChunk()
        made = 0
        attempts = 0
        while made < count:
            attempts += 1
            if attempts > count * 20:
                raise RuntimeError(
                    "the buyers already hold nearly every published course; "
                    "add --courses or --users, or ask for fewer --orders"
                )
            user = buyers[rng.randrange(len(buyers))]
            k = rng.choices(self._item_counts, self._item_weights)[0]
            courses = self._pick_courses(user, pool, k)
            if not courses:
                continue
            made += 1
            self._one_order(chunk, user, courses, coupons)
        return chunk

    def _one_order(
        self,
        chunk: OrderChunk,
        user: BulkUser,
        courses: list[PoolCourse],
        coupons: Sequence[BulkCoupon],
    ) -> None:
        rng = self.rng
        user.held.update(c.id for c in courses)
        original = to_paise(sum((c.price for c in courses), ZERO))
        status, payment_status = rng.choices(self._state_names, self._state_weights)[0]

        coupon: BulkCoupon | None = None
        discount = ZERO
        if original > 0 and coupons and rng.random() < COUPON_SHARE:
            candidate = coupons[rng.randrange(len(coupons))]
            if candidate.id not in user.coupons and (
                candidate.min_purchase is None or original >= candidate.min_purchase
            ):
                candidate_discount = discount_for(candidate, original)
                # A coupon that makes the order free completes it, whatever was drawn.
                final = "completed" if candidate_discount == original else status
                counts = final != "cancelled"  # maxUses counts orders not cancelled
                room = (
                    not counts or candidate.max_uses is None or candidate.uses < candidate.max_uses
                )
                # As checkout: a coupon taking nothing off is never used (rules.py).
                if candidate_discount > 0 and room:
                    coupon = candidate
                    discount = candidate_discount
                    user.coupons.add(candidate.id)
                    if counts:
                        candidate.uses += 1
        amount = original - discount
        if amount == 0:
            status, payment_status = "completed", "paid"

        # Old enough to be settled, or young enough to be still pending.
        earliest = max([user.created_at, *(c.created_at for c in courses)])
        if status in ("pending", "processing"):
            created = self._moment_between(max(earliest, self.now - PENDING_WINDOW), self.now)
        else:
            latest = self.now - timedelta(minutes=31)
            created = self._moment_between(earliest, latest if latest > earliest else self.now)
        settled = created + timedelta(seconds=rng.randint(20, 900))
        updated = min(settled, self.now) if status not in ("pending",) else created

        method: str | None
        metadata: dict[str, Any] | None = None
        if amount == 0:
            method = "free"
        elif status == "pending":
            method = rng.choice(PAYMENT_METHODS) if rng.random() < 0.5 else None
        else:
            method = rng.choice(PAYMENT_METHODS)
        payment_id = "pay_" + "".join(rng.choices(string.ascii_letters + string.digits, k=14))
        if payment_status in ("paid", "refunded") and amount > 0:
            metadata = {"paymentId": payment_id}
            if status == "refunded":
                metadata["refundReason"] = rng.choice(REFUND_REASONS)
        elif payment_status == "failed":
            metadata = {"paymentId": payment_id, "failureReason": rng.choice(FAILURE_REASONS)}

        order_id = new_id()
        chunk.orders.append(
            (
                order_id,
                self._order_number(created),
                user.id,
                status,
                amount,
                original,
                method,
                payment_status,
                "INR",
                json.dumps(metadata) if metadata is not None else None,
                created,
                updated,
            )
        )
        for course in courses:
            chunk.items.append((new_id(), order_id, course.id, course.price, created))
        if coupon is not None:
            chunk.usages.append((new_id(), coupon.id, user.id, order_id, discount, created))
        if status in ("completed", "refunded"):
            for course in courses:
                progress = 0 if rng.random() < 0.3 else rng.choice((10, 25, 40, 60, 80, 100))
                finished = (
                    self._moment_between(settled, self.now)
                    if progress == 100 and settled < self.now
                    else None
                )
                if progress == 100 and finished is None:
                    progress = 80
                chunk.enrollments.append(
                    (
                        new_id(),
                        user.id,
                        course.id,
                        order_id,
                        "active" if status == "completed" else "revoked",
                        progress,
                        finished,
                        updated,
                        finished or updated,
                    )
                )
