"""The torch engine interleaves requests: a small one finishes while a large one is still
decoding, and each answers exactly as it would alone (the same seeded tokens)."""

import asyncio
import time

from anvil.types import SampleWork

PROMPT = [1, 2, 3, 4]


def test_a_small_request_is_not_starved_by_a_large_one(loop, torch_engine):
    large = SampleWork(prompt=PROMPT, num_samples=16, max_tokens=400, seed=1, stop_tokens=())
    small = SampleWork(prompt=PROMPT, num_samples=1, max_tokens=2, seed=2, stop_tokens=())
    alone_large = loop.run(torch_engine.sample(large, None))
    alone_small = loop.run(torch_engine.sample(small, None))

    async def together():
        finished = {}

        async def timed(name, work):
            result = await torch_engine.sample(work, None)
            finished[name] = time.monotonic()
            return result

        started = time.monotonic()
        big = asyncio.ensure_future(timed("large", large))
        await asyncio.sleep(0.2)  # the large request is decoding when the small one arrives
        tiny = await timed("small", small)
        return await big, tiny, {k: v - started for k, v in finished.items()}

    got_large, got_small, at = loop.run(together())
    assert at["small"] < at["large"] / 3, at
    assert [s.tokens for s in got_large.sequences] == [s.tokens for s in alone_large.sequences]
    assert [s.tokens for s in got_small.sequences] == [s.tokens for s in alone_small.sequences]


def test_a_cancelled_request_stops_decoding(loop, torch_engine):
    endless = SampleWork(prompt=PROMPT, num_samples=8, max_tokens=2000, seed=3, stop_tokens=())

    async def cancel_it():
        task = asyncio.ensure_future(torch_engine.sample(endless, None))
        await asyncio.sleep(0.3)
        task.cancel()
        started = time.monotonic()
        # the engine is free again at once: a small request answers quickly
        await torch_engine.sample(SampleWork(prompt=PROMPT, num_samples=1, max_tokens=2, seed=4), None)
        return time.monotonic() - started

    assert loop.run(cancel_it()) < 2.0
