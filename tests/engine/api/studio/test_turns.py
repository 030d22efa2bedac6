import asyncio

from engine.api.studio.turns import Turns


def test_streams_take_turns_in_order_and_waiting_ones_know_their_place():
    async def scenario():
        turns, events = Turns(), []

        async def stream(name: str, hold: asyncio.Event):
            async def told(ahead: int):
                events.append((name, "waits", ahead))

            async with turns.turn(told):
                events.append((name, "runs"))
                await hold.wait()
            events.append((name, "done"))

        holds = {name: asyncio.Event() for name in "abc"}
        tasks = {}
        for name in "abc":
            tasks[name] = asyncio.create_task(stream(name, holds[name]))
            await asyncio.sleep(0.01)
        assert events == [("a", "runs"), ("b", "waits", 1), ("c", "waits", 2)]
        tasks["b"].cancel()  # a tab closed while waiting leaves the line
        await asyncio.sleep(0.01)
        assert ("c", "waits", 1) in events and turns.length == 2
        holds["a"].set()
        await asyncio.sleep(0.01)
        assert events[-2:] == [("a", "done"), ("c", "runs")]
        holds["c"].set()
        await tasks["c"]
        assert turns.length == 0

    asyncio.run(scenario())
