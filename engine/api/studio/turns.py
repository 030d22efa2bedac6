"""One model, many tabs: streams take turns, in the order they asked, and waiting ones know their place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class Turns:
    """A first-come, first-served line in front of the model (the one GPU, or the CPU)."""

    def __init__(self) -> None:
        self._line: list[object] = []  # the stream generating now first, then the waiting ones
        self._changed = asyncio.Condition()

    @property
    def length(self) -> int:
        return len(self._line)

    @asynccontextmanager
    async def turn(self, tell_place: Callable[[int], Awaitable[None]]) -> AsyncIterator[None]:
        """Wait until it is this caller's turn; `tell_place(n)` whenever n streams are ahead of it."""
        me = object()
        self._line.append(me)
        try:
            async with self._changed:
                told = None
                while (ahead := self._line.index(me)) > 0:
                    if ahead != told:
                        await tell_place(ahead)
                        told = ahead
                    await self._changed.wait()
            yield
        finally:
            self._line.remove(me)
            async with self._changed:
                self._changed.notify_all()
