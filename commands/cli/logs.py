"""Structured logging: INFO for state changes, DEBUG for scanner decisions, ERROR with the trace.

``--log-format json`` writes one JSON object per line with the ``run_id``, ``batch_id`` and
``record_key`` fields a record carries (pass them with ``extra=``).

A message is one line whatever it names: newlines, escape sequences and other control or
format characters in a message (a file name, a service's answer) are written escaped (``\\n``,
``\\x1b``, ``\\u202e``), so a hostile name cannot forge or hide log lines. A traceback, when
there is one, follows the message on its own lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from commands.worker.runlog import RunFilter
from eventlog.timestamps import format_ts

FIELDS = ("run_id", "batch_id", "record_key", "display_name", "attempt", "error_type")


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character but the space written as its Python escape
    (pure; printable text, non-ASCII letters included, is returned as it is)."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class TextFormatter(logging.Formatter):
    """``asctime LEVEL logger: message``, the message on one line (:func:`escape_controls`)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        record.msg, record.args = escape_controls(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": format_ts(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_controls(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(verbosity: int = 0, fmt: str = "text") -> None:
    """Configure the root logger once: ``verbosity`` -1 quiet (WARNING), 0 INFO, 1+ DEBUG."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO if verbosity == 0 else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RunFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The HTTP stack is chatty at DEBUG; its failures reach us as exceptions anyway.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "google_genai"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
