from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from eventlog.errors import EventDecodeError
from eventlog.events import ALL_EVENT_TYPES, REGISTRY, Event, EventRegistry, record_keys_of
from eventlog.store import EventStore
from tests.scenario import all_events


def test_every_event_type_round_trips_through_the_store(db_path: Path) -> None:
    events = all_events()
    covered = {type(e) for e in events}
    # The scenario covers most types; the rest get a hand-made instance.
    extra = [cls(**_sample_fields(cls)) for cls in ALL_EVENT_TYPES if cls not in covered]
    s = EventStore.open(db_path, create=True)
    s.append(events + extra, actor="t")
    back = [r.event for r in s.read()]
    s.close()
    assert back == events + extra
    assert {type(e) for e in back} == set(ALL_EVENT_TYPES)


def _sample_fields(cls: type[Event]) -> dict[str, Any]:
    samples = {str: "x", int: 1, bool: False}
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.required:
            out[f.name] = samples.get(f.type, [])
    return out


def test_every_event_type_is_tagged_versioned_frozen_and_has_a_stream() -> None:
    for cls in ALL_EVENT_TYPES:
        assert cls.__struct_config__.tag == cls.__name__
        assert cls.__struct_config__.frozen
        assert isinstance(cls.version, int) and cls.version >= 1
        instance = cls(**_sample_fields(cls))
        assert isinstance(instance.stream(), str)
    assert set(REGISTRY.types) == {c.__name__ for c in ALL_EVENT_TYPES}


def test_every_event_class_of_the_module_is_registered_in_definition_order() -> None:
    from eventlog import events

    defined = [
        obj
        for obj in vars(events).values()
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
    ]
    assert list(ALL_EVENT_TYPES) == defined
    assert list(REGISTRY.types.values()) == defined
    # Subclasses defined elsewhere (the Sighting types below) are not in the log's registry.
    assert "Sighting" not in REGISTRY.types


# An event type as an older release wrote it, and as the current release defines it.
class Sighting(Event, frozen=True):
    record_key: str

    def stream(self) -> str:
        return self.record_key


class SightingV1(Event, frozen=True, tag="Sighting"):
    record_key: str

    def stream(self) -> str:
        return self.record_key


class SightingWithField(Event, frozen=True, tag="Sighting"):
    """Version 1 plus a field with a default: no upcaster needed."""

    record_key: str
    confidence: float = 1.0

    def stream(self) -> str:
        return self.record_key


class SightingV2(Event, frozen=True, tag="Sighting"):
    """Version 2 splits ``record_key`` into parts: defaults cannot express that."""

    version: ClassVar[int] = 2
    state: str
    page: int

    def stream(self) -> str:
        return self.state


def test_an_event_written_before_a_field_was_added_still_decodes(db_path: Path) -> None:
    old = EventStore.open(db_path, create=True, registry=EventRegistry([SightingV1]))
    old.append([SightingV1(record_key="CA:X:2020:3")], actor="old")
    old.close()
    new = EventStore.open(db_path, registry=EventRegistry([SightingWithField]))
    [rec] = list(new.read())
    new.close()
    assert rec.event == SightingWithField(record_key="CA:X:2020:3", confidence=1.0)


def test_an_upcaster_carries_an_old_payload_to_the_new_shape(db_path: Path) -> None:
    old = EventStore.open(db_path, create=True, registry=EventRegistry([SightingV1]))
    old.append([SightingV1(record_key="CA:X:2020:3")], actor="old")
    old.close()

    registry = EventRegistry([SightingV2])

    @registry.upcaster("Sighting", from_version=1)
    def split_key(payload: dict[str, Any]) -> dict[str, Any]:
        state, _, _, page = payload.pop("record_key").split(":")
        return {**payload, "state": state, "page": int(page)}

    new = EventStore.open(db_path, registry=registry)
    new.append([SightingV2(state="TX", page=9)], actor="new")
    events = [r.event for r in new.read()]
    versions = [r.version for r in new.read()]
    new.close()
    assert events == [SightingV2(state="CA", page=3), SightingV2(state="TX", page=9)]
    assert versions == [1, 2]  # stored rows keep the version they were written with


def test_an_unknown_or_newer_event_is_a_clear_decode_error() -> None:
    with pytest.raises(EventDecodeError, match=r"event 7: unknown type 'Teleported'"):
        REGISTRY.decode("Teleported", 1, b'{"type":"Teleported"}', seq=7)
    with pytest.raises(EventDecodeError, match="version 9 is newer"):
        REGISTRY.decode("RunStarted", 9, b'{"type":"RunStarted","run_id":"r"}', seq=3)
    with pytest.raises(EventDecodeError, match="event 4: cannot decode RunStarted"):
        REGISTRY.decode("RunStarted", 1, b'{"type":"RunStarted"}', seq=4)


def test_record_keys_of_names_every_key_an_event_carries() -> None:
    by_type = {type(e).__name__: record_keys_of(e) for e in all_events()}
    assert by_type["BatchSubmitted"]  # the list of keys
    assert len(by_type["RecordFailed"]) == 1
    assert by_type["BatchFailed"] == []
