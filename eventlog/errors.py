"""The project's exception tree.

Every error this project raises on purpose derives from :class:`GeminiBatchesError`. Lower
libraries' exceptions are translated at one boundary each: apsw's in :mod:`eventlog.connection`
(:func:`translate_sqlite_errors`), google-genai's in ``commands.gemini.sdk``. The CLI prints an
:class:`OperatorError` as one line and exits 1 (a usage error: 2); anything else is a bug, logged
at ERROR with its traceback, exit 70.

::

    GeminiBatchesError
    ├── OperatorError                  the operator can fix it; printed as one line, exit 1
    │   ├── DatabaseError              the database file cannot be used
    │   │   ├── DatabaseNotFound       no file at the path
    │   │   ├── NotAnEventLog          empty, corrupt, not SQLite, or some other program's database
    │   │   │   └── DatabaseCorrupt    a damaged page or a truncated file (quick_check's findings)
    │   │   ├── WalLost                the -wal file was deleted or replaced under an open store
    │   │   ├── SchemaTooNew           written by a newer version of this tool
    │   │   ├── DatabaseBusy           locked by another process past the busy timeout
    │   │   ├── RunEnded               another worker recorded this worker's run as ended
    │   │   └── ProjectionWriteRefused a raw write to a projection table (use the named command)
    │   ├── AppendOnlyViolation        an UPDATE or DELETE on the events table was refused
    │   ├── ReplayRangeError           --until before the first event or in the future
    │   ├── NothingMatched             a filter that selects nothing
    │   ├── ConfigError                (commands.errors) a bad config file, key or value
    │   └── GatewayError               (commands.errors) the service refused or is unreachable
    ├── LeaseLost                      (commands.errors) another worker holds the partition: the
    │                                  worker stops touching it (caught, never shown)
    └── EventDecodeError               a stored event that this version cannot read (a bug or a
                                       newer writer); names the sequence number
"""

from __future__ import annotations


class GeminiBatchesError(Exception):
    """Root of every error this project raises on purpose."""


class OperatorError(GeminiBatchesError):
    """A problem the operator can fix; the CLI prints it as one line and exits non-zero."""


class DatabaseError(OperatorError):
    """The database file cannot be used as an event log."""


class DatabaseNotFound(DatabaseError):
    """No database file at the given path (and this command does not create one)."""


class NotAnEventLog(DatabaseError):
    """The file is empty, corrupt, not SQLite, or a SQLite database of some other program."""


class DatabaseCorrupt(NotAnEventLog):
    """SQLite found a damaged page or a truncated file; the message carries the integrity check's
    first findings and says to restore a backup."""


class WalLost(DatabaseError):
    """The write-ahead log this connection opened was deleted or replaced by someone else: any
    further write would go to a file nobody else sees, so the process stops."""


class RunEnded(DatabaseError):
    """Another worker recorded this worker's run as ended (``RunFinished``: it was paused or cut
    off from the log past its lease, and counted as crashed): the log takes nothing more from
    that run. The worker stops at once, records nothing, and is started again as a new run."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer version of this tool."""


class DatabaseBusy(DatabaseError):
    """Another process held the database lock past the busy timeout."""


class ProjectionWriteRefused(DatabaseError):
    """A write to a projection table outside the event log was refused by its trigger."""


class AppendOnlyViolation(OperatorError):
    """An UPDATE or DELETE on the events table was refused by the database."""


class ReplayRangeError(OperatorError):
    """A replay bound lies before the first event or in the future."""


class NothingMatched(OperatorError):
    """A filter selected nothing, so the command did nothing."""


class EventDecodeError(GeminiBatchesError):
    """A stored event cannot be decoded by this version of the code."""
