"""Administration: GET /admin/users (search, role filter, keyset pages), GET and PATCH
/admin/users/{id}, DELETE /admin/users/{id}, and the last admin."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from coursehub.core.database import Database
from coursehub.core.dburl import DatabaseConfig
from coursehub.core.locks import ADMIN_SET_LOCK_KEY
from coursehub.core.models import utcnow
from coursehub.core.security import UNUSABLE_PASSWORD
from coursehub.db import migrations
from coursehub.models import OrderStatus, PaymentStatus, Role, User
from coursehub.users import service as users_service
from coursehub.users.errors import AccountRemoved, UserNotFound
from coursehub.users.schemas import UserCreate
from tests.factories import (
    DEFAULT_PASSWORD,
    auth_headers,
    make_admin,
    make_course,
    make_enrollment,
    make_order,
    make_preferences,
    make_profile,
    make_user,
)
from tests.payments.helpers import commit_setup, deliver, enrollments_of, event, fresh
from tests.queries import captured, waiting_for_locks

USERS = "/api/v1/admin/users"


async def admin_count(session: AsyncSession) -> int:
    statement = select(func.count()).select_from(User).where(User.role == Role.admin)
    return (await session.execute(statement)).scalar_one()


# --- the list -------------------------------------------------------------------------------


async def test_search_by_email_or_username_prefix_any_case(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session, email="boss@corp.example", username="boss")
    await make_user(session, email="alice@example.com", username="wonder")
    await make_user(session, email="zed@example.com", username="Alistair")  # legacy case
    await make_user(session, email="bob@example.com", username="bobby")
    await make_user(session, email="a_b@example.com", username="under_score")
    await session.commit()
    headers = auth_headers(admin)

    async def usernames(**params: str) -> list[str]:
        response = await client.get(USERS, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return sorted(item["username"] for item in response.json()["items"])

    assert await usernames(q="ALI") == ["Alistair", "wonder"]
    assert await usernames(q="bob") == ["bobby"]
    assert await usernames(q="a_") == ["under_score"]  # `_` is literal, not a wildcard
    assert await usernames(q="%") == []
    assert await usernames(role="admin") == ["boss"]
    assert await usernames(role="user", q="b") == ["bobby"]
    assert len(await usernames()) == 5
    assert len(await usernames(q="")) == 5  # a blank search is no search


async def test_pages_are_newest_first_and_never_repeat_or_skip(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    base = utcnow() - timedelta(days=1)
    users = [await make_user(session) for _ in range(7)]
    for i, user in enumerate(users):
        user.created_at = base + timedelta(seconds=i // 2)  # ties: id breaks them
    await session.commit()
    headers = auth_headers(admin)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "3", "role": "user", **({"cursor": cursor} if cursor else {})}
        response = await client.get(USERS, params=params, headers=headers)
        assert response.status_code == 200, response.text
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    expected = sorted(users, key=lambda u: (u.created_at, u.id), reverse=True)
    assert seen == [u.id for u in expected]


async def test_tampered_or_foreign_cursors_are_400(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    for _ in range(3):
        await make_user(session)
    await session.commit()
    headers = auth_headers(admin)
    first = await client.get(USERS, params={"limit": "1"}, headers=headers)
    cursor = first.json()["next_cursor"]
    assert cursor

    tampered = await client.get(USERS, params={"cursor": cursor[:-2] + "xx"}, headers=headers)
    other_list = await client.get(USERS, params={"cursor": cursor, "role": "user"}, headers=headers)
    too_many = await client.get(USERS, params={"limit": "101"}, headers=headers)

    assert tampered.status_code == 400 and tampered.json()["code"] == "invalid_cursor"
    assert other_list.status_code == 400
    assert too_many.status_code == 422


# --- one user -------------------------------------------------------------------------------


async def test_user_detail_has_profile_preferences_and_counts_in_fixed_queries(
    client: httpx.AsyncClient, session: AsyncSession, engine: AsyncEngine
) -> None:
    admin = await make_admin(session)
    user = await make_user(session)
    await make_profile(session, user=user, first_name="Meera", phone_number="+919876543210")
    courses = [await make_course(session) for _ in range(4)]
    for course in courses[:3]:
        order = await make_order(session, user=user, courses=[course])
        await make_enrollment(session, user=user, course=course, order=order)
    bare = await make_user(session)
    await session.commit()
    headers = auth_headers(admin)

    with captured(engine) as log:
        response = await client.get(f"{USERS}/{user.id}", headers=headers)
    with captured(engine) as bare_log:
        bare_response = await client.get(f"{USERS}/{bare.id}", headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile"]["firstName"] == "Meera"
    assert body["preferences"] == {"theme": "light", "language": "en", "notifications": True}
    assert (body["ordersCount"], body["enrollmentsCount"]) == (3, 3)
    assert "password" not in body
    assert bare_response.json()["profile"]["firstName"] is None
    assert (bare_response.json()["ordersCount"], bare_response.json()["enrollmentsCount"]) == (0, 0)
    # The caller's own row, then the user with everything: two queries, however many rows.
    assert log.count == bare_log.count == 2


async def test_unknown_user_is_404(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    await session.commit()

    response = await client.get(f"{USERS}/no-such-user", headers=auth_headers(admin))

    assert response.status_code == 404 and response.json()["code"] == "user_not_found"


# --- roles ------------------------------------------------------------------------------------


async def test_promote_and_demote(client: httpx.AsyncClient, session: AsyncSession) -> None:
    admin = await make_admin(session)
    user = await make_user(session)
    await make_preferences(session, user=user, theme="dark")
    await session.commit()
    headers = auth_headers(admin)
    user_id = user.id  # (a refused request rolls the test session back, expiring `user`)

    promoted = await client.patch(f"{USERS}/{user_id}", json={"role": "admin"}, headers=headers)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    assert promoted.json()["preferences"]["theme"] == "dark"
    # The new admin can now demote the first one (two admins: not the last).
    demoted = await client.patch(
        f"{USERS}/{admin.id}", json={"role": "user"}, headers=auth_headers(user)
    )
    assert demoted.status_code == 200 and demoted.json()["role"] == "user"
    # The old admin is no longer one, on the next request: a route in a session, and one in
    # a write transaction, both refuse them before looking at the request.
    listed = await client.get(USERS, headers=headers)
    assert listed.status_code == 403 and listed.json()["code"] == "forbidden"
    refused = await client.patch(f"{USERS}/{user_id}", json={"role": "user"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert await admin_count(session) == 1


async def test_the_last_admin_can_be_neither_demoted_nor_deleted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    await session.commit()
    admin_id, headers = admin.id, auth_headers(admin)

    demote = await client.patch(f"{USERS}/{admin_id}", json={"role": "user"}, headers=headers)
    delete = await client.delete(f"{USERS}/{admin_id}", headers=headers)
    delete_me = await client.request(
        "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=headers
    )

    for response in (demote, delete, delete_me):
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "last_admin"
    assert await admin_count(session) == 1


async def test_admin_deletes_or_anonymises_a_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_admin(session)
    plain = await make_user(session)
    buyer = await make_user(session)
    await make_order(session, user=buyer, courses=[await make_course(session)])
    await session.commit()
    headers = auth_headers(admin)
    their_headers = [auth_headers(plain), auth_headers(buyer)]

    deleted = await client.delete(f"{USERS}/{plain.id}", headers=headers)
    anonymised = await client.delete(f"{USERS}/{buyer.id}", headers=headers)
    again = await client.delete(f"{USERS}/{plain.id}", headers=headers)

    assert deleted.json() == {"outcome": "deleted"}
    assert anonymised.json() == {"outcome": "anonymised"}
    assert again.status_code == 404
    # Their tokens stop working at once, on every kind of route.
    for their in their_headers:
        me = await client.get("/api/v1/me", headers=their)
        assert me.status_code == 401, me.text


async def test_an_anonymised_accounts_unpaid_orders_are_cancelled(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Its pending (and Node-era processing) orders were left open: a capture then completed
    them, enrolling an account nobody can sign in to, and nothing flagged the money."""
    admin = await make_admin(session)
    buyer = await make_user(session)
    pending = await make_order(session, user=buyer, courses=[await make_course(session)])
    processing = await make_order(
        session, user=buyer, courses=[await make_course(session)], status=OrderStatus.processing
    )
    paid = await make_order(
        session,
        user=buyer,
        courses=[await make_course(session)],
        status=OrderStatus.completed,
        payment_status=PaymentStatus.paid,
    )
    other = await make_order(session, user=admin, courses=[await make_course(session)])
    await commit_setup(session)

    removed = await client.delete(f"{USERS}/{buyer.id}", headers=auth_headers(admin))
    capture = await deliver(client, event(pending))

    assert removed.json() == {"outcome": "anonymised"}
    for order in (pending, processing):
        stored = await fresh(session, order)
        assert stored.status == OrderStatus.cancelled
        assert stored.payment_status == PaymentStatus.pending
        assert stored.metadata_ is not None
        assert stored.metadata_["cancelReason"] == "account_removed"
    assert capture.json()["outcome"] == "late_capture_flagged"
    assert (await fresh(session, pending)).metadata_["refundDue"] is True
    assert await enrollments_of(session, buyer.id) == {}
    assert (await fresh(session, paid)).status == OrderStatus.completed
    assert (await fresh(session, other)).status == OrderStatus.pending


async def test_removing_an_account_waits_for_a_payment_of_its_order_without_deadlock(
    committed_client: httpx.AsyncClient, committed_db: Database
) -> None:
    """A payment holds the buyer's order (locked first) when the account's removal
    starts, then grants the enrollment, whose foreign-key check takes the account's row.
    The removal locked the row first and then waited for the order: a deadlock, one of
    the two a 409 after a second. Now it takes the orders first and waits its turn; the
    order, paid, stays completed."""
    async with committed_db.transaction() as session:
        admin, buyer = await make_admin(session), await make_user(session)
        course = await make_course(session)
        order = await make_order(session, user=buyer, courses=[course])
    order_id, buyer_id, course_id = order.id, buyer.id, course.id

    async with committed_db.transaction() as payment:
        await payment.execute(
            text('SELECT 1 FROM "Order" WHERE id = :id FOR UPDATE'), {"id": order_id}
        )
        removal = asyncio.create_task(
            committed_client.delete(f"{USERS}/{buyer_id}", headers=auth_headers(admin))
        )
        await waiting_for_locks(committed_db, 1, what="account removals")
        await payment.execute(
            text(
                "UPDATE \"Order\" SET status = 'completed', \"paymentStatus\" = 'paid' "
                "WHERE id = :id"
            ),
            {"id": order_id},
        )
        await payment.execute(
            text(
                'INSERT INTO "CourseEnrollment" (id, "userId", "courseId", "orderId", status, '
                'progress, "updatedAt") VALUES (gen_random_uuid()::text, :user, '
                ":course, :order, 'active', 0, now())"
            ),
            {"user": buyer_id, "course": course_id, "order": order_id},
        )
    removed = await removal

    assert removed.status_code == 200, removed.text
    assert removed.json() == {"outcome": "anonymised"}
    async with committed_db.transaction() as session:
        status = await session.scalar(
            text('SELECT status::text FROM "Order" WHERE id = :id'), {"id": order_id}
        )
    assert status == "completed"


# --- the last admin under concurrency ----------------------------------------------------


async def test_concurrent_demotions_and_deletions_always_leave_one_admin(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    """Six admins each try to remove their admin role at the same moment — half by being
    demoted, half by deleting their accounts. Exactly one must stay."""
    async with committed_db.transaction() as session:
        admins = [await make_admin(session) for _ in range(6)]
    headers = [auth_headers(a) for a in admins]

    async def remove(i: int) -> httpx.Response:
        if i % 2:
            return await committed_client.patch(
                f"{USERS}/{admins[i].id}", json={"role": "user"}, headers=headers[i]
            )
        return await committed_client.request(
            "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=headers[i]
        )

    responses = await asyncio.gather(*(remove(i) for i in range(6)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 5, [r.text for r in responses]
    refused = [r for r in responses if r.status_code != 200]
    assert len(refused) == 1 and refused[0].status_code == 409
    assert refused[0].json()["code"] == "last_admin"
    async with committed_db.transaction() as session:
        assert await admin_count(session) == 1


async def test_two_admins_demoting_each_other_at_once_leave_one(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    for _ in range(5):  # a race is not always lost on the first try: give it several
        async with committed_db.transaction() as session:
            first, second = await make_admin(session), await make_admin(session)

        responses = await asyncio.gather(
            committed_client.patch(
                f"{USERS}/{second.id}", json={"role": "user"}, headers=auth_headers(first)
            ),
            committed_client.patch(
                f"{USERS}/{first.id}", json={"role": "user"}, headers=auth_headers(second)
            ),
        )

        statuses = sorted(r.status_code for r in responses)
        # One wins; the other is refused, as the last admin (409) or, if it ran after, as
        # no longer an admin (403).
        assert statuses[0] == 200 and statuses[1] in (403, 409), [r.text for r in responses]
        async with committed_db.transaction() as session:
            assert await admin_count(session) == 1
            await session.execute(
                update(User).where(User.role == Role.admin).values(role=Role.user)
            )


# --- removed accounts and demoted callers ---------------------------------------------------


async def test_an_anonymised_admin_no_longer_counts_as_one(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """An admin with orders is anonymised, not deleted: nobody can sign in to it, so it
    must not keep the last real admin from being protected, nor take a role again."""
    first = await make_admin(session)
    second = await make_admin(session)
    await make_order(session, user=second, courses=[await make_course(session)])
    await session.commit()
    first_id, second_id, headers = first.id, second.id, auth_headers(first)

    removed = await client.delete(f"{USERS}/{second_id}", headers=headers)
    demoted = await client.patch(f"{USERS}/{first_id}", json={"role": "user"}, headers=headers)
    promoted = await client.patch(f"{USERS}/{second_id}", json={"role": "admin"}, headers=headers)

    assert removed.json() == {"outcome": "anonymised"}
    assert (demoted.status_code, demoted.json()["code"]) == (409, "last_admin")
    assert (promoted.status_code, promoted.json()["code"]) == (409, "account_removed")
    anonymised = await session.scalar(
        select(User).where(User.id == second_id).execution_options(populate_existing=True)
    )
    assert anonymised is not None and anonymised.role == Role.user
    assert await admin_count(session) == 1


async def test_an_admin_demoted_while_their_request_waits_is_refused(
    committed_db: Database, committed_client: httpx.AsyncClient
) -> None:
    """B's request was admitted as an admin's, then queued behind A's demotion of B (the
    admins' lock). Run after it, it must see B demoted, not act on the role B had."""
    async with committed_db.transaction() as session:
        a, b, c = await make_admin(session), await make_admin(session), await make_user(session)
    b_headers = auth_headers(b)

    async with committed_db.transaction() as demotion:
        await demotion.execute(select(func.pg_advisory_xact_lock(ADMIN_SET_LOCK_KEY)))
        await demotion.execute(update(User).where(User.id == b.id).values(role=Role.user))
        promotion = asyncio.ensure_future(
            committed_client.patch(f"{USERS}/{c.id}", json={"role": "admin"}, headers=b_headers)
        )
        removal = asyncio.ensure_future(
            committed_client.delete(f"{USERS}/{a.id}", headers=b_headers)
        )
        await waiting_for_locks(committed_db, 2, what="requests")

    for response in (await promotion, await removal):
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), response.text
    async with committed_db.transaction() as session:
        roles = dict((await session.execute(select(User.id, User.role))).all())
    assert roles == {a.id: Role.admin, b.id: Role.user, c.id: Role.user}


async def test_migration_0010_demotes_the_admins_anonymised_before_it(
    scratch_db: DatabaseConfig,
) -> None:
    await migrations.migrate(scratch_db, "0009_course_slug_prefix_index")
    connection = await asyncpg.connect(**scratch_db.asyncpg_connect_kwargs())
    try:
        insert = (
            'INSERT INTO "User" (id, email, username, password, role, "updatedAt") '
            "VALUES ($1, $2, $3, $4, 'admin', now())"
        )
        await connection.execute(
            insert, "gone", "deleted-gone@deleted.invalid", "deleted-gone", UNUSABLE_PASSWORD
        )
        await connection.execute(insert, "kept", "kept@example.com", "kept", "$argon2id$x")
        await migrations.migrate(scratch_db)
        roles = dict(await connection.fetch('SELECT id, role::text FROM "User"'))
    finally:
        await connection.close()

    assert roles == {"gone": "user", "kept": "admin"}


@pytest.mark.parametrize("has_orders", [False, True], ids=["deleted", "anonymised"])
async def test_create_admin_promote_racing_the_accounts_removal_promotes_nothing(
    committed_db: Database, has_orders: bool
) -> None:
    """`coursehub users create-admin --promote` takes the admins' lock and the row's, as
    every role change: queued behind a removal, it sees the account gone. Before, it
    made the anonymised row an admin (one nobody can sign in as, counted as the last)."""
    async with committed_db.transaction() as session:
        user = await make_user(session)
        admin = await make_admin(session)
        if has_orders:
            await make_order(session, user=user, courses=[await make_course(session)])
        user_id, admin_id = user.id, admin.id
        data = UserCreate(email=user.email, username=user.username, password=DEFAULT_PASSWORD)

    async def promote() -> None:
        async with committed_db.transaction() as session:
            await users_service.create_admin(session, data, promote=True)

    async with committed_db.write_transaction() as removal:
        await users_service.remove_account(removal, user_id, acting_admin_id=admin_id)
        promotion = asyncio.ensure_future(promote())
        await waiting_for_locks(committed_db, 1, what="promotion")

    with pytest.raises(AccountRemoved if has_orders else UserNotFound):
        await promotion
    async with committed_db.transaction() as session:
        roles = dict((await session.execute(select(User.id, User.role))).all())
    assert roles == ({user_id: Role.user} if has_orders else {}) | {admin_id: Role.admin}
