"""The objects a server process holds from start-up on, kept out of the garbage
collector's way.

A worker loads ~130,000 objects at start-up (FastAPI, pydantic, SQLAlchemy, the routes,
the mappers) and keeps them all until it exits. Every full (generation 2) collection
walks them all: measured ~90 ms each, every ~2 s under load, a pause of every request in
that worker and a whole collection that freed nothing. `gc.freeze()` moves them to the
permanent generation, which collections skip; objects made afterwards are collected as
before. A collection first, so start-up's own garbage is not kept for ever."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def startup_objects_frozen() -> Iterator[None]:
    """Within: what exists on entering is frozen (skipped by the garbage collector);
    thawed on leaving, so a process that starts and stops apps (the tests) ends as it
    began."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
