"""Which project the next batch goes to (:func:`commands.rules.admission.pick_project`), and the
projects a config resolves to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands.config import parse_config
from commands.errors import ConfigError, GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.admission import (
    ProjectRoom,
    has_room,
    pick_project,
)
from commands.rules.reconcile import reconcile
from commands.rules.submit import (
    CreateContext,
    OpenIntent,
    judge_create_error,
)
from eventlog.events import BatchSubmissionDeferred, BatchSubmitted

R = ProjectRoom


@pytest.mark.parametrize(
    ("rooms", "want"),
    [
        ([], None),
        ([R("a", 2)], "a"),
        ([R("a", 0)], None),
        ([R("a", -1)], None),
        ([R("a", 2, held=True)], None),
        ([R("a", 1), R("b", 3)], "b"),  # the most free slots
        ([R("a", 3), R("b", 3)], "a"),  # a tie: the first configured
        ([R("a", 2, 100), R("b", 2, 500)], "b"),  # then the most free tokens
        ([R("a", 2, None), R("b", 2, 500)], "a"),  # no token limit counts as the most
        ([R("a", 4, 0), R("b", 1, 10)], "b"),  # no token room: passed over
        ([R("a", 4, -5), R("b", 1)], "b"),
        ([R("a", 4, held=True), R("b", 1)], "b"),  # a project held by its quota is skipped
        ([R("a", 0), R("b", 0, held=True)], None),
    ],
)
def test_pick_project(rooms: list[ProjectRoom], want: str | None) -> None:
    assert pick_project(rooms) == want


def test_three_projects_take_three_times_the_batches() -> None:
    rooms = {name: 2 for name in ("a", "b", "c")}
    picked = []
    while (name := pick_project([R(n, free) for n, free in rooms.items()])) is not None:
        rooms[name] -= 1
        picked.append(name)
    assert len(picked) == 6 and sorted(picked) == ["a", "a", "b", "b", "c", "c"]


def test_a_single_project_config_is_one_default_project() -> None:
    config = parse_config(
        {"gemini": {"api_key_env": "MY_KEY"}, "batching": {"max_active_batches": 3}},
        Path("c.toml"),
    )
    (only,) = config.projects()
    assert (only.name, only.api_key_env, only.max_active_batches) == ("default", "MY_KEY", 3)
    assert only.max_enqueued_tokens == 0


def test_projects_take_their_own_limits_or_batchings() -> None:
    config = parse_config(
        {
            "batching": {"max_active_batches": 5, "max_enqueued_tokens": 1000},
            "gemini": {
                "projects": [
                    {"name": "a", "api_key_env": "KEY_A", "max_active_batches": 2},
                    {"name": "b", "api_key_env": "KEY_B", "max_enqueued_tokens": 0},
                ]
            },
        },
        Path("c.toml"),
    )
    got = [(p.name, p.max_active_batches, p.max_enqueued_tokens) for p in config.projects()]
    assert got == [("a", 2, 1000), ("b", 5, 0)]


@pytest.mark.parametrize(
    ("projects", "message"),
    [
        (
            [{"name": "a", "api_key_env": "A"}, {"name": "a", "api_key_env": "B"}],
            "[gemini] projects: Value error, project names must be unique (twice: a)",
        ),
        ([{"name": "a"}], "[gemini] projects.0.api_key_env: Field required"),
        (
            [{"name": "a", "api_key_env": "A", "key": "secret"}],
            "[gemini] projects.0.key: unknown key (known keys: name, api_key_env, "
            "max_active_batches, max_enqueued_tokens)",
        ),
        (
            [{"name": "a b", "api_key_env": "A"}],
            "[gemini] projects.0.name: String should match pattern",
        ),
        (
            [{"name": "a", "api_key_env": "A", "max_active_batches": 0}],
            "[gemini] projects.0.max_active_batches: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_project_entry_names_the_key(projects: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"gemini": {"projects": projects}}, Path("c.toml"))
    assert message in str(info.value)


def test_an_adopted_or_deferred_submission_keeps_its_project() -> None:
    intent = OpenIntent("gb-1", "m", "files/r", ["k"], project="b")
    job = RemoteBatch("batches/1", "gb-1", "JOB_STATE_PENDING")
    (submitted,) = reconcile(intent, [job]).events
    assert isinstance(submitted, BatchSubmitted) and submitted.project == "b"
    error = GatewayError("429 quota", code=429, transient=True, status="RESOURCE_EXHAUSTED")
    context = CreateContext(intent, datetime(2026, 1, 1, tzinfo=UTC))
    (deferred,) = judge_create_error("gb-1", error, context).events
    assert isinstance(deferred, BatchSubmissionDeferred) and deferred.project == "b"


@pytest.mark.parametrize(
    ("batches", "tokens", "max_batches", "max_tokens", "estimated", "room"),
    [
        (0, 0, 2, 0, 500, True),  # empty, no token limit
        (1, 0, 2, 0, 500, True),
        (2, 0, 2, 0, 500, False),  # full by count: another worker took the last slot
        (3, 0, 2, 0, 500, False),  # over (never made worse)
        (1, 9_000, 2, 10_000, 1_000, True),  # exactly at the token limit
        (1, 9_000, 2, 10_000, 1_001, False),
        (0, 0, 2, 10_000, 20_000, True),  # bigger than the limit, nothing in flight: alone
        (1, 100, 2, 10_000, 20_000, False),  # ... but not beside another batch
    ],
)
def test_has_room_is_decided_inside_the_intents_transaction(
    batches: int, tokens: int, max_batches: int, max_tokens: int, estimated: int, room: bool
) -> None:
    assert has_room(batches, tokens, max_batches, max_tokens, estimated) is room
