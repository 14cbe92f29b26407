"""Micro-batching: inputs from concurrent requests run through the model together.

A request puts each of its inputs on a queue and awaits the results. One worker task takes the
first waiting input, collects more for up to `max_wait_ms` (or until `max_batch` are in hand),
and runs the batch in a single background thread, so model calls never overlap and the event
loop stays free to accept and parse other requests meanwhile. Under load the batches fill up
at once and the wait costs nothing; a lone request waits `max_wait_ms` at most.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class MicroBatcher:
    """Collect inputs from concurrent callers into batches for `fn`.

    Args:
        fn: Runs one batch: `fn(list_of_inputs) -> list_of_results` (same length, same order).
        max_batch: Most inputs per call of `fn`.
        max_wait_ms: How long the first input of a batch waits for company.

    Example:
        >>> batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=8, max_wait_ms=5)
        >>> await batcher.submit([1, 2, 3])
        [2, 4, 6]
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch: int = 16, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max(max_wait_ms, 0.0) / 1000
        self.batches = 0
        self.items = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graftkit-model")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def _ensure_worker(self) -> asyncio.Queue:
        # One queue and worker per event loop (test clients may run each request in a new loop).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run())
        assert self._queue is not None
        return self._queue

    async def submit(self, inputs: list[Any]) -> list[Any]:
        """Results for `inputs`, in order; raises what `fn` raised for their batch."""
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in inputs]
        for x, f in zip(inputs, futures):
            queue.put_nowait((x, f))
        return list(await asyncio.gather(*futures))

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.done()]  # a caller may have gone away
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [x for x, _ in live])
            except Exception as e:  # every caller of this batch gets the error
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)

    def close(self) -> None:
        """Stop the worker and the model thread."""
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False)
