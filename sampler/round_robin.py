"""Step-wise jobs on one thread, a few steps of each in turn: one large request cannot starve a
small one.

The torch engine decodes on a single thread. Run one request at a time, and a request for 64
samples of 2000 tokens holds that thread for minutes while another user's 2-token sample waits
behind it; here every active request advances `steps_per_turn` decoding steps, then the next one
does, so a small request finishes after a few turns of each request ahead of it (vLLM gets the
same from its continuous batching). At most `max_active` requests hold their decoding state (KV
cache) at once; more wait, in arrival order.
"""

import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

Steps = Generator[None, None, Any]


@dataclass
class _Job:
    steps: Steps
    future: Future


class RoundRobin:
    def __init__(self, name: str, steps_per_turn: int = 4, max_active: int = 16,
                 on_thread_start: Callable[[], None] | None = None):
        self.steps_per_turn, self.max_active = steps_per_turn, max_active
        self._on_thread_start = on_thread_start
        self._waiting: deque[_Job] = deque()
        self._active: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, steps: Steps) -> Future:
        """`steps` yields after each unit of work and returns the job's result. The future may be
        cancelled until the job ends; a cancelled job is dropped at its next turn."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is shut down")
            self._waiting.append(_Job(steps, future))
            self._cond.notify()
        return future

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        for job in [*self._waiting, *self._active]:
            job.future.cancel()

    def _run(self) -> None:
        if self._on_thread_start is not None:
            self._on_thread_start()
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                if self._closed:
                    return
                while self._waiting and len(self._active) < self.max_active:
                    self._active.append(self._waiting.popleft())
                job = self._active.popleft()
            if job.future.cancelled():
                job.steps.close()
                continue
            if self._turn(job):
                with self._cond:
                    self._active.append(job)

    def _turn(self, job: _Job) -> bool:
        """Advance the job by one turn; False once it has ended."""
        try:
            for _ in range(self.steps_per_turn):
                next(job.steps)
        except StopIteration as done:
            _settle(job.future, result=done.value)
            return False
        except BaseException as exc:  # deliberate: the job's error goes to whoever awaits it
            _settle(job.future, error=exc)
            return False
        return True


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled meanwhile by its caller
        pass
