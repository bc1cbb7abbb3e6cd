"""`Actor`: the base class users subclass, with typed handler dispatch and lifecycle hooks."""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar, overload

if TYPE_CHECKING:
    from ._cell import Cell
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ["Actor", "Handler", "handler", "interleave"]

_F = TypeVar("_F", bound=Callable[..., Any])
_HANDLES = "__actors_handles__"
_INTERLEAVE = "__actors_interleave__"


class Handler(NamedTuple):
    """One entry of an actor class's dispatch table."""

    func: Callable[..., Any]
    is_async: bool
    interleave: bool


@overload
def handler(*types: type) -> Callable[[_F], _F]: ...
@overload
def handler(func: _F, /) -> _F: ...
def handler(*args: Any) -> Any:
    """Mark a method as the handler of a message type.

    ``@handler`` takes the type from the annotation of the method's message parameter (a union registers
    each member); ``@handler(Prefill, Decode)`` names the types explicitly. The return value is the reply to
    an `ask` (ignored for `tell`). Plain ``def`` handlers run inline (fastest); ``async def`` handlers are
    awaited. A handler that raises crashes the incarnation (let it crash: a supervisor restarts it).
    """
    if len(args) == 1 and callable(args[0]) and not isinstance(args[0], type):
        func = args[0]
        setattr(func, _HANDLES, ())
        return func
    types = args
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"@handler({t!r}): pass message classes, e.g. @handler(Prefill)")

    def mark(func: _F) -> _F:
        setattr(func, _HANDLES, tuple(types))
        return func

    return mark


def interleave(func: _F) -> _F:
    """Opt-in reentrancy: this handler may run while another handler of the actor is suspended.

    Interleaved handlers start in their own task as soon as their message arrives, overtaking serial messages
    queued behind a suspended serial handler; serial handlers still run one at a time in arrival order.
    Stack with `@handler` in either order.
    """
    setattr(func, _INTERLEAVE, True)
    return func


def _annotated_types(cls: type, name: str, func: Callable[..., Any]) -> tuple[type, ...]:
    params = list(inspect.signature(func).parameters)
    if len(params) != 2:
        raise TypeError(f"{cls.__qualname__}.{name}: a handler takes (self, msg); got parameters {params}")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # NameError for forward refs, TYPE_CHECKING-only imports
        raise TypeError(
            f"{cls.__qualname__}.{name}: cannot resolve the message annotation ({exc}); "
            f"name the type explicitly: @handler(MsgType)"
        ) from exc
    hint = hints.get(params[1])
    if hint is None:
        raise TypeError(f"{cls.__qualname__}.{name}: annotate the message parameter or use @handler(MsgType)")
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    for member in members:
        if not isinstance(member, type):
            raise TypeError(f"{cls.__qualname__}.{name}: {member!r} is not a class; use @handler(MsgType)")
    return tuple(members)


_UnionType = type(int | str)


class Actor:
    """Subclass, declare handlers, spawn with `ActorSystem.spawn` (never call handlers directly).

    One task per incarnation runs handlers one at a time in arrival order. A restart builds a fresh
    instance with the constructor (state is never carried over).

    Example::

        class Counter(Actor):
            def __init__(self) -> None:
                self.n = 0

            @handler
            def add(self, msg: Add) -> int:
                self.n += msg.k
                return self.n
    """

    handlers: ClassVar[dict[type, Handler]] = {}
    _cell: Cell | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, Handler] = dict(cls.handlers)  # inherited entries, overridable
        own: set[type] = set()
        for name, func in vars(cls).items():
            if not callable(func) or not hasattr(func, _HANDLES):
                continue
            types = getattr(func, _HANDLES) or _annotated_types(cls, name, func)
            entry = Handler(func, inspect.iscoroutinefunction(func), bool(getattr(func, _INTERLEAVE, False)))
            for t in types:
                if t in own:
                    raise TypeError(f"{cls.__qualname__}: two handlers for {t.__qualname__}; keep one")
                own.add(t)
                table[t] = entry
        cls.handlers = table

    # -- lifecycle hooks -------------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Runs in the actor's task before the first message; raising fails `spawn`."""

    async def on_stop(self) -> None:
        """Runs after a graceful stop or a crash (not after a kill or a watchdog hang)."""

    def holds_work(self) -> bool:
        """Watchdog hook: True while the actor owns unfinished work outside its mailbox (e.g. an engine's
        running batch). Queued or in-flight messages always count as work."""
        return False

    # -- context ---------------------------------------------------------------------------------------
    @property
    def ref(self) -> ActorRef:
        """This incarnation's ref (valid from `on_start` on)."""
        return self._live_cell().ref

    @property
    def system(self) -> ActorSystem:
        return self._live_cell().system

    def progress(self) -> None:
        """Tell the watchdog that work advanced (each finished handler counts automatically)."""
        self._live_cell().progress += 1

    def stop(self) -> None:
        """Stop this incarnation normally after the current handler returns (reason ``normal``)."""
        self._live_cell().request_stop(normal=True)

    def schedule(self, delay_s: float, msg: Any) -> asyncio.TimerHandle:
        """Deliver `msg` to this actor after `delay_s` seconds of loop time (ignores mailbox capacity)."""
        cell = self._live_cell()
        return cell.loop.call_later(delay_s, cell.mailbox.put_system, msg)

    def watch(self, ref: ActorRef) -> None:
        """Deliver `ChildDown(ref, reason)` to this actor when `ref` ends (at once if it already has)."""
        cell = self._live_cell()
        cell.system.watch(ref, cell.ref)

    def _live_cell(self) -> Cell:
        if self._cell is None:
            raise RuntimeError(f"{type(self).__qualname__} is not spawned; use `await system.spawn(...)`")
        return self._cell
