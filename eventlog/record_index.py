"""The log's index of each record's history, written with the events it indexes.

A record's history (``replay.py --record``) is the events of its own stream, found by the
``events_by_stream`` index, and the events that name it only in a list (a batch's
``record_keys``, a reset's), found by ``event_record_keys``: one row (record key, sequence
number) per key an event names other than its own stream. The dashboard's record history reads
the record's own stream, through the same index. The rows are inserted in the same statement
group as their events (both backends), refused UPDATE and DELETE like the events, and
backfilled from the payloads by the schema migration that made the table.
"""

from __future__ import annotations

from eventlog.events import Event, record_keys_of

#: One ``event_record_keys`` row; the ``?`` placeholders of either backend's connection.
INSERT_KEY = "INSERT INTO event_record_keys (record_key, seq) VALUES (?, ?) ON CONFLICT DO NOTHING"


def keys_named_elsewhere(event: Event, stream: str) -> list[str]:
    """The record keys ``event`` names (``eventlog.events.record_keys_of``) other than its own
    ``stream``, each once: its ``event_record_keys`` rows. Most events name one key, their
    stream, and have none."""
    return [k for k in dict.fromkeys(record_keys_of(event)) if k != stream]
