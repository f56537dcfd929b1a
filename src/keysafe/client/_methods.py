"""The agent routes as client methods, listed once for AgentClient and AsyncAgentClient.

`AgentRoutes` names one `Route` per agent route; a `Route` is a descriptor that turns its
builder (_routes.py: arguments, docs, the `Call`) into a method of the client it is read from:
the client's `_run` sends the call, so AgentClient's methods return the answer and
AsyncAgentClient's (whose `_run` is a coroutine function) are coroutine functions that do.
help(), IDEs and `inspect` see the builder's name, docs and arguments.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, get_args, overload

from keysafe.client import _routes as routes
from keysafe.client._calls import Call

P = ParamSpec("P")
T = TypeVar("T")


class _Sends(Protocol):
    """A client that sends a call and returns its answer (AgentClient)."""

    def _run(self, call: Call[T], /) -> T: ...


class _AwaitsSends(Protocol):
    """A client whose sending is awaited (AsyncAgentClient)."""

    def _run(self, call: Call[T], /) -> Coroutine[Any, Any, T]: ...


def _described(method: Callable[..., Any], build: Callable[..., Call[Any]]) -> None:
    """Give `method` (`self, *args, **kwargs`) the name, docs and arguments of `build`, with
    `self` in front and the answer's type as the return type."""
    functools.update_wrapper(method, build)
    signature = inspect.signature(build, eval_str=True)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]  # read by inspect
        parameters=[this, *signature.parameters.values()],
        return_annotation=get_args(signature.return_annotation)[0],
    )


class Route(Generic[P, T]):
    """One agent route as a method of either client, made from its builder."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        def send(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
            return client._run(build(*args, **kwargs))

        async def send_awaited(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
            return await client._run(build(*args, **kwargs))

        _described(send, build)
        _described(send_awaited, build)
        self._send, self._send_awaited = send, send_awaited

    def _function(self, owner: type[object]) -> Callable[..., Any]:
        awaited = inspect.iscoroutinefunction(getattr(owner, "_run", None))
        return self._send_awaited if awaited else self._send

    @overload
    def __get__(self, client: None, owner: type[object]) -> Callable[..., Any]: ...
    @overload
    def __get__(
        self, client: _AwaitsSends, owner: type[object]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, client: _Sends, owner: type[object]) -> Callable[P, T]: ...
    def __get__(self, client: object, owner: type[object]) -> Callable[..., Any]:
        function = self._function(owner)
        return function if client is None else types.MethodType(function, client)


class AgentRoutes:
    """The agent routes, one method each (arguments and docs: _routes.py)."""

    health = Route(routes.health)
    whoami = Route(routes.whoami)
    capabilities = Route(routes.capabilities)
    address = Route(routes.address)
    sign_transaction = Route(routes.sign_transaction)
    send_transaction = Route(routes.send_transaction)
    transfer = Route(routes.transfer)
    sign_message = Route(routes.sign_message)
    sign_typed_data = Route(routes.sign_typed_data)
    http_request = Route(routes.http_request)
    read_data = Route(routes.read_data)
    threshold_commit = Route(routes.threshold_commit)
    keygens = Route(routes.keygens)
    keygen_exchange = Route(routes.keygen_exchange)
    release_credential = Route(routes.release_credential)
    check = Route(routes.check)
    pending_approvals = Route(routes.pending_approvals)
    approval = Route(routes.approval)
