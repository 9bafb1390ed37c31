"""Store calls from the event loop: each runs on one of the store's own threads, so the loop never
waits on the database, and a slow model load in the default executor never holds up a query."""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
# store calls from the loop in flight at once; with the press thread and the futures' writer they
# stay within the 5 connections of SQLAlchemy's default pool
STORE_THREADS = 4


class OffLoop(Generic[T]):
    """`await off_loop.method(...)` for every method of the wrapped store; `.sync` is the store
    itself, for code that already runs on a worker thread (the press, the sampler)."""

    def __init__(self, store: T, executor: ThreadPoolExecutor):
        self.sync = store
        self._executor = executor

    def __getattr__(self, name: str):
        method = getattr(self.sync, name)

        async def call(*args, **kwargs):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(method, *args, **kwargs))

        return call


def store_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="anvil-store")
