"""core/heap.py: what start-up made is skipped by the garbage collector while the app
runs, and thawed when it stops."""

from __future__ import annotations

import gc
import weakref

from coursehub.app import create_app
from coursehub.core.database import Database
from coursehub.core.heap import startup_objects_frozen
from coursehub.core.settings import Settings


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it


def test_objects_made_before_are_skipped_by_collections_until_thawed() -> None:
    assert gc.get_freeze_count() == 0
    node = Node()
    gone = weakref.ref(node)
    with startup_objects_frozen():
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None  # frozen: not even looked at

        made_after = Node()
        made_after_gone = weakref.ref(made_after)
        del made_after
        gc.collect()
        assert made_after_gone() is None  # collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None


async def test_the_running_app_holds_its_start_up_objects_frozen(
    database: Database, settings: Settings
) -> None:
    app = create_app(
        settings.model_copy(update={"order_expiry_interval_seconds": 0}), database=database
    )
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
