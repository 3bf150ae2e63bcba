"""WORKLOAD.md's operations through the store's own code: the service and repository
functions the API's routes call, each in the unit of work its route runs it in: a write
transaction opened and committed as the routes' dependency does
(`Database.write_transaction`: checkout, sign-up, the admins' role changes and
deletions), or a read connection checked out as the read-only routes' dependency does
(`Database.read_connection`: the public catalogue)."""

from __future__ import annotations

from coursehub.bench.fixture import BENCH_PASSWORD_HASH, Fixture
from coursehub.catalog import service as catalog_service
from coursehub.catalog.schemas import CourseListQuery
from coursehub.core.database import Database
from coursehub.core.pagination import CursorCodec
from coursehub.core.sql import Writer
from coursehub.orders.checkout import place_order
from coursehub.users import repository as users_repository
from coursehub.users import service as users_service
from coursehub.users.models import Role, User

OPERATIONS = ("user_crud", "tx_user_profile", "catalog_page", "course_by_slug", "checkout")


class OurOps:
    def __init__(self, database: Database, fixture: Fixture, *, secret: str, tag: str) -> None:
        self.database = database
        self.fixture = fixture
        self.codec = CursorCodec(secret)
        self.tag = tag  # keeps this run's e-mail addresses apart from any other's
        # The list query GET /courses?category=… parses, one per category.
        self.list_queries = [CourseListQuery(category=c) for c in fixture.categories]

    def _identity(self, kind: str, index: int) -> tuple[str, str]:
        name = f"o{kind}{self.tag}{index}"
        return f"{name}@bench.example.com", name

    # --- accounts -------------------------------------------------------------------

    async def user_crud(self, index: int) -> None:
        """Create, read with profile, make admin, delete: four units of work, as four
        requests. The writes in write transactions, as the routes that make them run them
        (POST /auth/register, the admin's PATCH and DELETE /admin/users/{id}); the read,
        DATABASE.md's `findUnique` with its profile (a repository function no route serves
        alone: GET /admin/users/{id} adds preferences and counts), on a read connection, as
        the store's read-only requests run."""
        email, username = self._identity("u", index)
        async with self.database.write_transaction() as writer:
            user = await users_repository.create_user(
                writer, email=email, username=username, password_hash=BENCH_PASSWORD_HASH
            )
            user_id = user.id
        async with self.database.read_connection() as reader:
            found = await users_repository.get_user_with_profile(reader, user_id)
            assert found is not None
        async with self.database.write_transaction() as writer:
            await users_repository.update_user_role(writer, user_id=user_id, role=Role.admin)
        async with self.database.write_transaction() as writer:
            await users_repository.delete_user(writer, user_id=user_id)

    async def tx_user_profile(self, index: int) -> None:
        email, username = self._identity("p", index)
        async with self.database.write_transaction() as writer:
            await users_service.create_user_with_profile(
                writer,
                email=email,
                username=username,
                password_hash=BENCH_PASSWORD_HASH,
                first_name="Bench",
                last_name="User",
            )

    # --- catalogue ------------------------------------------------------------------

    async def catalog_page(self, index: int) -> None:
        query = self.list_queries[index % len(self.list_queries)]
        async with self.database.read_connection() as reader:
            page = await catalog_service.list_published_courses(reader, query, codec=self.codec)
            assert page.items

    async def course_by_slug(self, index: int) -> None:
        slug = self.fixture.course_slugs[index % len(self.fixture.course_slugs)]
        async with self.database.read_connection() as reader:
            await catalog_service.get_published_course(reader, slug, viewer=None)

    # --- checkout -------------------------------------------------------------------

    async def _new_user(self, writer: Writer, index: int) -> User:
        email, username = self._identity("c", index)
        return await users_repository.create_user(
            writer, email=email, username=username, password_hash=BENCH_PASSWORD_HASH
        )

    async def checkout(self, index: int) -> None:
        """A new user buys two published courses with BENCH10, in a write transaction, as
        POST /orders runs."""
        await self._checkout(index, self.fixture.coupon_code)

    async def checkout_no_coupon(self, index: int) -> None:
        await self._checkout(index, None)

    async def checkout_own_coupon(self, index: int) -> None:
        """As `checkout`, with one of 64 twins of BENCH10 (index mod 64): concurrent
        checkouts then use coupons of their own."""
        codes = self.fixture.own_coupon_codes
        await self._checkout(index, codes[index % len(codes)])

    async def checkout_limited_coupon(self, index: int) -> None:
        """As `checkout`, with BENCH10's twin limited to a million uses: each checkout claims
        a use under a lock on the coupon's row (shared, this far from the limit)."""
        await self._checkout(index, self.fixture.limited_coupon_code)

    async def _checkout(self, index: int, coupon_code: str | None) -> None:
        async with self.database.write_transaction() as writer:
            user = await self._new_user(writer, index)
            await place_order(
                writer,
                user=user,
                course_ids=self.fixture.course_pair(index),
                coupon_code=coupon_code,
                payment_method="card",
                idempotency_key=None,
            )
