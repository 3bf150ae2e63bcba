"""Enrollment rules: granted by a paid (or free) order or by an admin, revoked by a refund."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from coursehub.enrollments import repository


async def grant_enrollments_for_order(
    session: AsyncSession, *, user_id: str, order_id: str, course_ids: list[str]
) -> None:
    """Enroll the buyer in every course of a completed order (reactivating revoked ones)."""
    await repository.upsert_active_enrollments(
        session, user_id=user_id, course_ids=course_ids, order_id=order_id
    )


async def revoke_enrollments_for_order(session: AsyncSession, *, order_id: str) -> int:
    """Revoke what a refunded order granted. The number revoked."""
    return await repository.revoke_enrollments_of_order(session, order_id=order_id)
