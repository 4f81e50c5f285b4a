"""The worker's pools (commands/worker/pools.py): calls on threads, background tasks waited for,
and how a stage's flows end together when some fail."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.errors import GatewayError
from commands.worker.cycle import Cycle
from commands.worker.pools import Pools, gather
from eventlog.errors import DatabaseBusy
from gemini_emulator.service import Service
from tests.fakes import EmulatorPort, make_worker


@pytest.fixture
def pools() -> Iterator[Pools]:
    p = Pools(calls=4)
    yield p
    p.close()


def test_calls_run_on_the_pool_threads_and_side_by_side(pools: Pools) -> None:
    barrier = threading.Barrier(4, timeout=5)  # passes only if four calls are in flight at once

    def call(n: int) -> tuple[int, str]:
        barrier.wait()
        return n, threading.current_thread().name

    async def stage() -> list[tuple[int, str]]:
        return await gather(pools.call(call, n) for n in range(4))

    got = pools.run(stage())
    assert [n for n, _ in got] == [0, 1, 2, 3]
    assert all(name.startswith("calls") for _, name in got)


def test_a_failed_flow_lets_the_others_finish_then_its_error_is_raised(pools: Pools) -> None:
    finished: list[str] = []

    async def fails() -> None:
        raise GatewayError("boom", transient=True)

    async def slow(name: str) -> str:
        await asyncio.sleep(0.05)
        finished.append(name)
        return name

    async def returns_an_error() -> GatewayError:
        return GatewayError("a value, not raised")

    async def stage() -> list[object]:
        return await gather([slow("a"), fails(), slow("b"), returns_an_error()])

    with pytest.raises(GatewayError, match="boom"):
        pools.run(stage())
    assert sorted(finished) == ["a", "b"]

    async def values() -> list[object]:
        return await gather([slow("c"), returns_an_error()])

    got = pools.run(values())
    assert got[0] == "c" and isinstance(got[1], GatewayError)


def test_a_failure_of_the_log_cancels_the_other_flows_at_once(pools: Pools) -> None:
    finished: list[str] = []

    async def log_locked() -> None:
        raise DatabaseBusy("locked")

    async def slow() -> None:
        await asyncio.sleep(5)
        finished.append("slow")

    async def stage() -> None:
        await gather([slow(), log_locked(), slow()])

    with pytest.raises(DatabaseBusy):
        pools.run(stage())
    assert finished == []


def test_the_log_failure_is_raised_and_every_other_error_logged_once(
    pools: Pools, caplog: pytest.LogCaptureFixture
) -> None:
    """A flow's error before the log's failure (in the order given) is logged, not lost; the
    log's failure is raised, not also logged as "another"."""

    async def fails() -> None:
        raise GatewayError("the service said no", transient=False)

    async def log_locked() -> None:
        await asyncio.sleep(0.01)
        raise DatabaseBusy("locked")

    async def stage() -> None:
        await gather([fails(), log_locked()])

    with pytest.raises(DatabaseBusy):
        pools.run(stage())
    others = [r.getMessage() for r in caplog.records if "failed too" in r.getMessage()]
    assert others == ["Another flow of the stage failed too: GatewayError: the service said no"]


def test_background_tasks_go_on_between_stages_and_settle_waits_for_them(pools: Pools) -> None:
    done: list[str] = []

    async def later() -> None:
        await pools.call(lambda: None)
        done.append("deleted")

    async def first_stage() -> None:
        pools.background(later())

    pools.run(first_stage())
    pools.run(pools.settle())
    assert done == ["deleted"]


def test_close_cancels_what_is_left_and_can_be_called_twice() -> None:
    p = Pools(calls=1)
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def stage() -> None:
        p.background(forever())
        await asyncio.sleep(0)

    p.run(stage())
    p.close()
    p.close()
    assert cancelled == [True]


def test_a_stage_that_fails_leaves_nothing_running_into_the_next(tmp_path: Path) -> None:
    """Its flows and the background tasks it started are cancelled before its error goes up,
    so ``run --loop`` (or a Prefect retry) starts the next cycle from the log alone."""
    w = make_worker(tmp_path, EmulatorPort(Service()), [])
    cycle = Cycle(w)
    ran: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ran.append(name)

    left: list[asyncio.Task[None]] = []

    async def stage() -> None:
        w.pools.background(forever("background"))
        left.append(asyncio.ensure_future(forever("flow")))
        await asyncio.sleep(0)
        raise GatewayError("the stage failed", transient=True)

    try:
        with pytest.raises(GatewayError):
            cycle._stage(stage())
        assert sorted(ran) == ["background", "flow"] and left[0].cancelled()
        assert not [t for t in asyncio.all_tasks(w.pools.loop) if not t.done()]
    finally:
        cycle.close()
        w.store.close()
