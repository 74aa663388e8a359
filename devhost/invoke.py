"""Call user functions with their trigger value, sync or async, as the Python worker does."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from devhost.context import InvocationContext
from devhost.functions_index import CONTEXT_PARAMETER, IndexedFunction

T = TypeVar("T")


class Invoker:
    """Runs sync functions in the calling thread and async ones on one shared event loop.

    One loop for every async invocation (started on first use) mirrors the worker, so
    clients an app caches across invocations (aiohttp sessions, async SDK clients) stay
    bound to a single loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def call(self, function: IndexedFunction, trigger_value: Any) -> Any:
        """Invoke `function` with `trigger_value` (and a context if it asks for one); return its result."""
        kwargs: dict[str, Any] = {function.arg_name: trigger_value}
        if function.wants_context:
            kwargs[CONTEXT_PARAMETER] = InvocationContext(function.name, _directory_of(function))
        result = function.user_function(**kwargs)
        if inspect.isawaitable(result):
            return self._run(result)
        return result

    def close(self) -> None:
        """Stop the event loop thread, if one was started."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()

    def _run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self._event_loop()).result()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="devhost-async", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


def _directory_of(function: IndexedFunction) -> str:
    try:
        return os.path.dirname(inspect.getfile(function.user_function))
    except TypeError:  # built-ins and other objects without a source file
        return os.getcwd()
