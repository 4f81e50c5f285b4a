"""The state enums are the one list of states: the job states are exactly the SDK's (plus the one
this tool records for a job the service no longer knows), and each is the string stored before."""

from __future__ import annotations

from google.genai import types

from commands.gemini.port import normalize_state
from eventlog.states import FAILED_STATES, SUCCESS_STATES, WAITING_STATES, JobState, RecordStatus


def test_job_states_are_the_sdks_and_not_found() -> None:
    sdk = {s.value for s in types.JobState}
    assert {s.value for s in JobState} == sdk | {"JOB_STATE_NOT_FOUND"}


def test_a_state_is_its_stored_string() -> None:
    assert JobState.SUCCEEDED == "JOB_STATE_SUCCEEDED"
    assert f"{JobState.FAILED}" == "JOB_STATE_FAILED"
    assert RecordStatus.DEAD_LETTERED == "dead_lettered"
    assert {str(s) for s in RecordStatus} == {
        "pending",
        "reserved",
        "inflight",
        "written",
        "failed",
        "dead_lettered",
    }
    assert {
        "JOB_STATE_PENDING",
        "JOB_STATE_QUEUED",
        "JOB_STATE_PAUSED",
        "JOB_STATE_UPDATING",
        "JOB_STATE_CANCELLING",
    } == WAITING_STATES
    assert {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"} == SUCCESS_STATES
    assert {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"} == FAILED_STATES


def test_normalize_gives_members_for_known_states_and_text_for_new_ones() -> None:
    for state in types.JobState:
        assert normalize_state(state) is JobState(state.value)
    assert normalize_state("BATCH_STATE_RUNNING") is JobState.RUNNING
    assert normalize_state("succeeded") is JobState.SUCCEEDED
    assert normalize_state(None) is JobState.UNSPECIFIED
    unknown = normalize_state("BATCH_STATE_MYSTERY")
    assert unknown == "JOB_STATE_MYSTERY" and not isinstance(unknown, JobState)
