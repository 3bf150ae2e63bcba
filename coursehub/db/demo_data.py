"""The demo data `coursehub db seed` writes: a catalogue and coupons that exercise the rules.

Courses are valid by the catalogue's rules (slugs as `slug_from_title` makes them,
levels from `CourseLevel`, lower-case categories, INR prices with two decimals);
a test checks each against `CourseCreate`. Coupon dates are relative to the day
of seeding, so "expired" and "not started yet" stay true whenever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from coursehub.catalog.enums import CourseLevel
from coursehub.coupons.models import CouponType

DEFAULT_ADMIN_EMAIL = "admin@coursehub.dev"
THUMBNAIL_BASE = "https://images.coursehub.dev/courses/"


@dataclass(frozen=True)
class DemoCourse:
    title: str
    slug: str
    description: str
    duration: int  # minutes
    price: Decimal  # INR
    category: str
    level: CourseLevel
    features: list[str] = field(default_factory=list)
    is_published: bool = True
    is_featured: bool = False

    @property
    def thumbnail(self) -> str:
        return f"{THUMBNAIL_BASE}{self.slug}.jpg"


DEMO_COURSES: tuple[DemoCourse, ...] = (
    DemoCourse(
        title="Complete Python Bootcamp: Zero to Hero",
        slug="complete-python-bootcamp-zero-to-hero",
        description=(
            "Learn Python from the very first line of code to writing real programs: "
            "variables, functions, collections, files, testing and a capstone project."
        ),
        duration=1320,
        price=Decimal("3499.00"),
        category="programming",
        level=CourseLevel.beginner,
        features=["22 hours of video", "120 coding exercises", "Capstone project", "Certificate"],
        is_featured=True,
    ),
    DemoCourse(
        title="Modern JavaScript and TypeScript",
        slug="modern-javascript-and-typescript",
        description=(
            "ES2024 JavaScript and TypeScript in depth: async code, modules, generics, "
            "type narrowing and the tooling of a modern front-end project."
        ),
        duration=960,
        price=Decimal("2999.00"),
        category="web development",
        level=CourseLevel.intermediate,
        features=["16 hours of video", "Type-safe project", "Lifetime access"],
        is_featured=True,
    ),
    DemoCourse(
        title="Full-Stack Web Development with React and Node.js",
        slug="full-stack-web-development-with-react-and-node-js",
        description=(
            "Build and deploy a full-stack application: React with hooks, a Node.js API, "
            "PostgreSQL, authentication and payments."
        ),
        duration=2100,
        price=Decimal("4499.00"),
        category="web development",
        level=CourseLevel.intermediate,
        features=["35 hours of video", "Three real projects", "Deployment guide", "Certificate"],
    ),
    DemoCourse(
        title="Data Science and Machine Learning with Python",
        slug="data-science-and-machine-learning-with-python",
        description=(
            "NumPy, pandas, visualisation and scikit-learn: clean real data sets, build "
            "models, and evaluate them honestly."
        ),
        duration=1800,
        price=Decimal("4999.00"),
        category="data science",
        level=CourseLevel.intermediate,
        features=["30 hours of video", "Jupyter notebooks", "Kaggle-style projects"],
        is_featured=True,
    ),
    DemoCourse(
        title="SQL and PostgreSQL for Analysts",
        slug="sql-and-postgresql-for-analysts",
        description=(
            "Query data with confidence: joins, aggregates, window functions, indexes and "
            "reading query plans, on PostgreSQL."
        ),
        duration=600,
        price=Decimal("1999.00"),
        category="data science",
        level=CourseLevel.beginner,
        features=["10 hours of video", "Practice database", "Cheat sheets"],
    ),
    DemoCourse(
        title="Deep Learning with PyTorch",
        slug="deep-learning-with-pytorch",
        description=(
            "Neural networks from tensors up: CNNs, transformers, training on GPUs, and "
            "shipping models to production."
        ),
        duration=1500,
        price=Decimal("5999.00"),
        category="machine learning",
        level=CourseLevel.advanced,
        features=["25 hours of video", "GPU notebooks", "Research paper walkthroughs"],
    ),
    DemoCourse(
        title="UI/UX Design Fundamentals with Figma",
        slug="ui-ux-design-fundamentals-with-figma",
        description=(
            "Design interfaces people enjoy: research, wireframes, visual design, "
            "prototyping and hand-off in Figma."
        ),
        duration=720,
        price=Decimal("2499.00"),
        category="design",
        level=CourseLevel.beginner,
        features=["12 hours of video", "Figma templates", "Portfolio project"],
    ),
    DemoCourse(
        title="Digital Marketing Masterclass",
        slug="digital-marketing-masterclass",
        description=(
            "SEO, social media, email, paid ads and analytics: plan and measure a "
            "campaign for an Indian audience."
        ),
        duration=840,
        price=Decimal("1499.00"),
        category="marketing",
        level=CourseLevel.all_levels,
        features=["14 hours of video", "Campaign templates", "Case studies"],
    ),
    DemoCourse(
        title="Personal Finance and Investing in India",
        slug="personal-finance-and-investing-in-india",
        description=(
            "Budgets, emergency funds, tax-saving under 80C, mutual funds, SIPs and index "
            "investing, explained without jargon."
        ),
        duration=420,
        price=Decimal("999.00"),
        category="finance",
        level=CourseLevel.all_levels,
        features=["7 hours of video", "Spreadsheet planner", "Quizzes"],
    ),
    DemoCourse(
        title="Git and GitHub Essentials",
        slug="git-and-github-essentials",
        description=(
            "Version control for everyone: commits, branches, merges, pull requests and "
            "recovering from mistakes. Free."
        ),
        duration=180,
        price=Decimal("0.00"),
        category="programming",
        level=CourseLevel.beginner,
        features=["3 hours of video", "Hands-on exercises"],
    ),
    DemoCourse(
        title="Kubernetes in Production",
        slug="kubernetes-in-production",
        description=(
            "Run real workloads on Kubernetes: deployments, autoscaling, observability "
            "and incident response. (Draft: still being recorded.)"
        ),
        duration=1200,
        price=Decimal("3999.00"),
        category="devops",
        level=CourseLevel.advanced,
        features=["20 hours of video", "Cluster labs"],
        is_published=False,
    ),
)


@dataclass(frozen=True)
class DemoCoupon:
    code: str
    type: CouponType
    value: Decimal
    description: str
    starts_in_days: int  # relative to the day of seeding; negative: in the past
    ends_in_days: int
    max_discount: Decimal | None = None
    min_purchase: Decimal | None = None
    max_uses: int | None = None

    def dates(self, today: datetime) -> tuple[datetime, datetime]:
        return (
            today + timedelta(days=self.starts_in_days),
            today + timedelta(days=self.ends_in_days),
        )


DEMO_COUPONS: tuple[DemoCoupon, ...] = (
    DemoCoupon(
        code="WELCOME20",
        type=CouponType.percentage,
        value=Decimal("20"),
        max_discount=Decimal("500.00"),
        description="20% off your first course, up to ₹500.",
        starts_in_days=-1,
        ends_in_days=365,
    ),
    DemoCoupon(
        code="FLAT300",
        type=CouponType.fixed,
        value=Decimal("300.00"),
        description="₹300 off any order.",
        starts_in_days=-1,
        ends_in_days=180,
    ),
    DemoCoupon(
        code="BIGSAVE15",
        type=CouponType.percentage,
        value=Decimal("15"),
        max_discount=Decimal("2000.00"),
        min_purchase=Decimal("5000.00"),
        description="15% off orders of ₹5,000 or more, up to ₹2,000.",
        starts_in_days=-1,
        ends_in_days=365,
    ),
    DemoCoupon(
        code="FESTIVE30",
        type=CouponType.percentage,
        value=Decimal("30"),
        max_discount=Decimal("1000.00"),
        description="Festive sale: 30% off (ended).",
        starts_in_days=-60,
        ends_in_days=-30,
    ),
    DemoCoupon(
        code="NEWYEAR25",
        type=CouponType.percentage,
        value=Decimal("25"),
        description="New year sale: 25% off (not started yet).",
        starts_in_days=30,
        ends_in_days=60,
    ),
    DemoCoupon(
        code="EARLYBIRD500",
        type=CouponType.fixed,
        value=Decimal("500.00"),
        max_uses=100,
        description="₹500 off for the first 100 learners.",
        starts_in_days=-1,
        ends_in_days=90,
    ),
)
