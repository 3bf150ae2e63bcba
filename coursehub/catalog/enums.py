"""The catalogue's closed vocabularies, shared by its schemas, service and repository."""

from __future__ import annotations

from enum import StrEnum


class CourseLevel(StrEnum):
    beginner = "beginner"
    intermediate = "intermediate"
    advanced = "advanced"
    all_levels = "all-levels"


class CourseSort(StrEnum):
    """List orders; each is backed by an index and ends in `id`, so keysets are unique."""

    newest = "newest"  # createdAt desc, id desc
    price_asc = "price_asc"  # price asc, id asc
    price_desc = "price_desc"  # price desc, id desc
    title_asc = "title"  # title asc, id asc
    relevance = "relevance"  # ts_rank desc, id desc; only with a search query
