"""The states the log speaks of, one enum each: a batch job's state (as the service names it, plus
the one this tool records for a job the service no longer knows) and a record's status.

Both are ``StrEnum``: a member *is* its string, so events and projection rows store the plain text
they always stored, and comparing with a stored string just works.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class JobState(StrEnum):
    """A batch job's state: the Gemini API's ``JOB_STATE_*`` names (the SDK's ``JobState``)."""

    UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
    QUEUED = "JOB_STATE_QUEUED"
    PENDING = "JOB_STATE_PENDING"
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLING = "JOB_STATE_CANCELLING"
    CANCELLED = "JOB_STATE_CANCELLED"
    PAUSED = "JOB_STATE_PAUSED"
    EXPIRED = "JOB_STATE_EXPIRED"
    UPDATING = "JOB_STATE_UPDATING"
    PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
    #: Not a service state: what a batch the service answers 404 for is recorded as.
    NOT_FOUND = "JOB_STATE_NOT_FOUND"


#: Accepted and not running: the states a batch can be stuck in (the stuck-job policy,
#: ``stuck_pending_hours``, bounds them; a state this tool does not know is bounded the same way).
WAITING_STATES = frozenset(
    {
        JobState.PENDING,
        JobState.QUEUED,
        JobState.PAUSED,
        JobState.UPDATING,
        JobState.CANCELLING,
    }
)
#: Ended with results to collect (a partial success's missing lines are failures).
SUCCESS_STATES = frozenset({JobState.SUCCEEDED, JobState.PARTIALLY_SUCCEEDED})
#: Ended without results: the batch's records are free for resubmission.
FAILED_STATES = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


@unique
class RecordStatus(StrEnum):
    """Where a record stands (``record_status.status``)."""

    PENDING = "pending"
    #: Held by a submission intent (no batch id yet).
    RESERVED = "reserved"
    INFLIGHT = "inflight"
    WRITTEN = "written"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


#: Statuses in which a batch or an intent holds the record.
HELD_STATUSES = (RecordStatus.RESERVED, RecordStatus.INFLIGHT)
