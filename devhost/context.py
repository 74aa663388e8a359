"""The `func.Context` handed to functions that declare a `context` parameter."""

from __future__ import annotations

import threading
import uuid

import azure.functions as func
from azure.functions import _abc  # TraceContext / RetryContext are not re-exported by azure.functions


class _TraceContext(_abc.TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _NoException(_abc.RpcException):
    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _RetryContext(_abc.RetryContext):
    # The dev host has no function-level retry policies: every invocation is the first try.
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> _abc.RpcException:
        return _NoException()


class InvocationContext(func.Context):
    """One invocation: a fresh id, the function's name and directory; no tracing, no retries."""

    _thread_local = threading.local()

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        # The worker sets this so logging from user threads can be tied to the invocation.
        self._thread_local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # azure stubs say Type[local]
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _abc.TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> _abc.RetryContext:
        return _RetryContext()
