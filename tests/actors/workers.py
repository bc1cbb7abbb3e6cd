"""Importable actors and messages for the cross-process tests (child nodes import this module)."""

from __future__ import annotations

import asyncio
import os

import msgspec
import numpy as np

from actors import Actor, handler, message


@message
class Add(msgspec.Struct, frozen=True):
    k: int


@message
class Sleep(msgspec.Struct, frozen=True):
    seconds: float


@message
class Crash(msgspec.Struct, frozen=True):
    text: str = "boom"


@message
class Scale(msgspec.Struct, frozen=True):
    """An ndarray in; a torch tensor (2x the values, float32) out."""

    data: np.ndarray
    factor: float = 2.0


@message
class Pid(msgspec.Struct, frozen=True):
    pass


class Counter(Actor):
    def __init__(self, start: int = 0) -> None:
        self.n = start

    @handler
    def add(self, msg: Add) -> int:
        self.n += msg.k
        return self.n

    @handler
    async def sleep(self, msg: Sleep) -> float:
        await asyncio.sleep(msg.seconds)
        return msg.seconds

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(msg.text)

    @handler
    def pid(self, msg: Pid) -> int:
        return os.getpid()

    @handler(str)
    def echo(self, msg: str) -> str:
        return msg


class TensorWorker(Actor):
    """Replies to `Scale` with a torch tensor: imports torch only in this (device-like) process."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    @handler
    def scale(self, msg: Scale) -> object:
        return self.torch.from_numpy(np.ascontiguousarray(msg.data, dtype=np.float32)) * msg.factor

    @handler
    async def sleep(self, msg: Sleep) -> float:
        await asyncio.sleep(msg.seconds)
        return msg.seconds

    @handler
    def pid(self, msg: Pid) -> int:
        return os.getpid()


class AtExitWriter(Actor):
    """Registers an atexit hook in its (child) process that writes ``"atexit ran"`` to `path`."""

    def __init__(self, path: str) -> None:
        import atexit

        def write() -> None:
            with open(path, "w") as f:
                f.write("atexit ran")

        atexit.register(write)
