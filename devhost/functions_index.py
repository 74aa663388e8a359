"""Index a `FunctionApp` the way the Python worker does: once, into HTTP, Event Grid, queue and timer functions.

The trigger of each function is read through its function.json form
(`Trigger.get_dict_repr()`), which is exactly what the Functions host sees, so
generic triggers declared with `type="httpTrigger"` index the same as `@app.route`.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import azure.functions as func

log = logging.getLogger(__name__)

HTTP_TRIGGER = "httpTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"

#: The parameter name the worker fills with a `func.Context`, when a function declares it.
CONTEXT_PARAMETER = "context"

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RouteTemplate:
    """An HTTP route such as `runs/{run_id}/cancel`, matched segment by segment, case-insensitively.

    Only literal segments and whole-segment `{name}` parameters are supported; constraints
    (`{id:int}`), optional (`{id?}`), catch-all (`{*rest}`) and mixed segments (`{a}.{b}`)
    are refused at indexing time rather than silently routed differently from Azure.
    """

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        segments: list[tuple[bool, str]] = []  # (is_parameter, literal-casefolded-or-name)
        for segment in self.template.split("/") if self.template else []:
            match = _PARAMETER.fullmatch(segment)
            if match:
                segments.append((True, match.group(1)))
            elif "{" in segment or "}" in segment:
                raise ValueError(
                    f"route {template!r}: segment {segment!r} is not supported by the dev host "
                    "(only literal segments and plain {name} parameters are)"
                )
            elif segment == "":
                raise ValueError(f"route {template!r} has an empty segment")
            else:
                segments.append((False, segment.casefold()))
        self._segments = tuple(segments)

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: literal segments win over parameters in the same position, as in ASP.NET routing."""
        return tuple(int(is_parameter) for is_parameter, _ in self._segments)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Route parameters if the (already URL-decoded) path segments match, else None."""
        if len(segments) != len(self._segments):
            return None
        params: dict[str, str] = {}
        for (is_parameter, expected), actual in zip(self._segments, segments, strict=True):
            if is_parameter:
                if not actual:
                    return None
                params[expected] = actual
            elif actual.casefold() != expected:
                return None
        return params

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"


@dataclass(frozen=True)
class IndexedFunction:
    """A user function and how to call it: its trigger value goes to `arg_name`."""

    name: str
    arg_name: str
    user_function: Callable[..., Any] = field(repr=False)
    #: The function declares a `context` parameter, which the worker fills with a `func.Context`.
    wants_context: bool


@dataclass(frozen=True)
class HttpFunction(IndexedFunction):
    """An HTTP trigger. `methods` is None when the function accepts every method."""

    route: RouteTemplate
    methods: frozenset[str] | None

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


@dataclass(frozen=True)
class EventGridFunction(IndexedFunction):
    """An Event Grid trigger, addressed by function name through the webhook."""


@dataclass(frozen=True)
class QueueFunction(IndexedFunction):
    """A Storage queue trigger: invoked on each message of `queue_name`, in the account `connection` names."""

    queue_name: str
    connection: str


@dataclass(frozen=True)
class TimerFunction(IndexedFunction):
    """A timer trigger. The dev host runs it at a fixed interval; `schedule` is kept for display."""

    schedule: str
    run_on_startup: bool


@dataclass(frozen=True)
class HttpResolution:
    """Outcome of routing a request: a function and its route parameters, or why there is none."""

    function: HttpFunction | None = None
    route_params: Mapping[str, str] = field(default_factory=dict)
    #: Methods the path accepts; non-empty with `function` None means 405 rather than 404.
    allowed: frozenset[str] = frozenset()


@dataclass
class FunctionIndex:
    """The functions of one app, by trigger kind."""

    http: list[HttpFunction] = field(default_factory=list)
    event_grid: dict[str, EventGridFunction] = field(default_factory=dict)
    timers: list[TimerFunction] = field(default_factory=list)
    queues: list[QueueFunction] = field(default_factory=list)
    #: Functions whose trigger the dev host does not run (name -> trigger type).
    unsupported: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_app(cls, app: func.FunctionRegister) -> FunctionIndex:
        """Index `app`. Calls `app.get_functions()`, which azure-functions allows only once per app."""
        if getattr(app, "functions_bindings", None):
            # A second get_functions() fails with a misleading "not a unique function name".
            raise ValueError(
                "this FunctionApp was already indexed (azure-functions allows get_functions() once per app); "
                "give each DevHost a new app object"
            )
        return cls.from_functions(app.get_functions())

    @classmethod
    def from_functions(cls, functions: Iterable[func.Function]) -> FunctionIndex:
        index = cls()
        for function in functions:
            index._add(function)
        return index

    def resolve(self, method: str, segments: list[str]) -> HttpResolution:
        """Find the HTTP function for `method` and the route-relative path `segments`."""
        matches = [(f, params) for f in self.http if (params := f.route.match(segments)) is not None]
        if not matches:
            return HttpResolution()
        allowed = [(f, params) for f, params in matches if f.allows(method)]
        if not allowed:
            methods = set().union(*(f.methods or () for f, _ in matches))
            return HttpResolution(allowed=frozenset(methods))
        function, params = min(allowed, key=lambda pair: pair[0].route.specificity)
        return HttpResolution(function=function, route_params=params)

    def _add(self, function: func.Function) -> None:
        name = function.get_function_name() or function.get_user_function().__name__
        trigger = function.get_trigger()
        if trigger is None:  # get_functions() already refuses these; kept for type narrowing
            raise ValueError(f"function {name} has no trigger")
        spec = trigger.get_dict_repr()
        kind = str(spec.get("type"))
        user_function = function.get_user_function()
        arg_name = str(spec.get("name"))
        parameters = inspect.signature(user_function).parameters
        if arg_name not in parameters:
            # The worker refuses to load such a function too; fail at start, not on first call.
            raise ValueError(f"function {name}: trigger argument {arg_name!r} is not a parameter of {user_function}")
        common: dict[str, Any] = {
            "name": name,
            "arg_name": arg_name,
            "user_function": user_function,
            "wants_context": CONTEXT_PARAMETER in parameters and arg_name != CONTEXT_PARAMETER,
        }
        self._warn_about_bindings(name, function, arg_name)
        if kind == HTTP_TRIGGER:
            route = RouteTemplate(str(spec.get("route") or name))
            raw_methods = spec.get("methods")
            methods = frozenset(_enum_value(m).upper() for m in raw_methods) if raw_methods else None
            self.http.append(HttpFunction(**common, route=route, methods=methods))
        elif kind == EVENT_GRID_TRIGGER:
            self.event_grid[name] = EventGridFunction(**common)
        elif kind == TIMER_TRIGGER:
            self.timers.append(
                TimerFunction(
                    **common, schedule=str(spec.get("schedule", "")), run_on_startup=bool(spec.get("runOnStartup"))
                )
            )
        elif kind == QUEUE_TRIGGER:
            queue = QueueFunction(
                **common, queue_name=str(spec.get("queueName", "")), connection=str(spec.get("connection", ""))
            )
            if "%" in queue.queue_name:  # an app-setting expression: the host would resolve it from settings
                raise ValueError(f"function {name}: queue name {queue.queue_name!r} must be literal on the dev host")
            self.queues.append(queue)
        else:
            self.unsupported[name] = kind
            log.warning("function %s has a %s trigger, which the dev host does not run", name, kind)

    @staticmethod
    def _warn_about_bindings(name: str, function: func.Function, arg_name: str) -> None:
        for binding in function.get_bindings():
            spec = binding.get_dict_repr()
            binding_name = str(spec.get("name"))
            if binding_name in (arg_name, "$return"):
                continue
            log.warning(
                "function %s: %s binding %r is not emulated by the dev host; calls will fail",
                name,
                spec.get("type"),
                binding_name,
            )


def _enum_value(value: object) -> str:
    # HttpMethod is a StringifyEnum whose str() is the member *name*; use the value.
    return str(value.value) if isinstance(value, Enum) else str(value)
