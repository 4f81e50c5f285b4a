"""The unmodified google-genai SDK against the emulator, endpoint by endpoint."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from gemini_emulator import Emulator

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "page": {"type": "integer"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["text", "page"],
}


def client(
    emu: Emulator, version: str | None = None, key: str = "test-key", timeout_ms: int | None = None
) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=emu.url, api_version=version, timeout=timeout_ms),
    )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def upload_png(c: genai.Client, name: str = "CA:X:2020:1") -> types.File:
    return c.files.upload(
        file=io.BytesIO(b"\x89PNG\r\n\x1a\nfake"),
        config={"mime_type": "image/png", "display_name": name},
    )


def name_of(resource: types.File | types.BatchJob) -> str:
    """The resource's name; the service always sets it (the SDK types every field Optional)."""
    assert resource.name is not None
    return resource.name


def uri_of(f: types.File) -> str:
    """The file's URI; the service always sets it on an uploaded file."""
    assert f.uri is not None
    return f.uri


def request_line(key: str, uri: str, schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    return {
        "key": key,
        "request": {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "extract"},
                        {"fileData": {"fileUri": uri, "mimeType": "image/png"}},
                    ],
                }
            ],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": schema,
            },
        },
    }


def submit(c: genai.Client, lines: list[dict[str, Any]], name: str = "gb-1") -> types.BatchJob:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    req = c.files.upload(
        file=io.BytesIO(body), config={"mime_type": "jsonl", "display_name": f"{name}-req"}
    )
    return c.batches.create(
        model="gemini-2.5-flash", src=name_of(req), config={"display_name": name}
    )


def results(c: genai.Client, job: types.BatchJob) -> dict[str, dict[str, Any]]:
    job = c.batches.get(name=name_of(job))
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None and job.dest.file_name is not None
    data = c.files.download(file=job.dest.file_name)
    return {json.loads(x)["key"]: json.loads(x) for x in data.decode().splitlines()}


@pytest.mark.parametrize("version", [None, "v1", "v1beta", "v1alpha"])
def test_file_upload_get_list_delete_on_every_api_version(
    emu: Emulator, version: str | None
) -> None:
    c = client(emu, version)
    f = upload_png(c)
    assert name_of(f).startswith("files/") and f.state == types.FileState.ACTIVE
    assert f.size_bytes == 12 and f.mime_type == "image/png" and uri_of(f).endswith(name_of(f))
    assert f.expiration_time is not None and f.create_time is not None
    assert f.expiration_time - f.create_time == timedelta(hours=48)
    got = c.files.get(name=name_of(f))
    assert got.display_name == "CA:X:2020:1" and got.sha256_hash
    assert [x.name for x in c.files.list()] == [f.name]
    c.files.delete(name=name_of(f))
    with pytest.raises(errors.ClientError) as info:
        c.files.get(name=name_of(f))
    assert info.value.code == 403 and info.value.status == "PERMISSION_DENIED"


def test_large_upload_goes_in_several_chunks(emu: Emulator) -> None:
    c = client(emu)
    data = b"\x89PNG\r\n\x1a\n" + b"x" * (9 * 1024 * 1024)  # over the SDK's 8 MiB chunk
    f = c.files.upload(file=io.BytesIO(data), config={"mime_type": "image/png"})
    assert f.size_bytes == len(data)
    assert emu.policy.calls("files.upload_bytes") == 2


def test_file_list_pages(emu: Emulator) -> None:
    c = client(emu)
    names = {upload_png(c, f"k{i}").name for i in range(7)}
    listed = {f.name for f in c.files.list(config={"page_size": 3})}
    assert listed == names


def test_batch_from_a_jsonl_file_runs_the_whole_lifecycle(emu: Emulator) -> None:
    emu.policy = {"timing": {"pending_seconds": 0.2, "running_seconds": 0.2}}
    c = client(emu)
    f = upload_png(c)
    job = submit(c, [request_line("CA:X:2020:1", uri_of(f))])
    assert name_of(job).startswith("batches/") and job.display_name == "gb-1"
    assert job.state == types.JobState.JOB_STATE_PENDING
    time.sleep(0.25)
    assert c.batches.get(name=name_of(job)).state == types.JobState.JOB_STATE_RUNNING
    time.sleep(0.2)
    done = c.batches.get(name=name_of(job))
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    line = results(c, job)["CA:X:2020:1"]
    text = line["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert set(json.loads(text)) >= {"text", "page"}
    usage = line["response"]["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    with pytest.raises(errors.ClientError) as info:
        c.files.download(file=name_of(f))  # uploaded files cannot be downloaded
    assert info.value.code == 400


def test_inline_requests_come_back_inline(emu: Emulator) -> None:
    c = client(emu)
    inline: list[types.InlinedRequestDict] = [
        {
            "contents": [{"parts": [{"text": "x"}], "role": "user"}],
            "config": {
                "response_mime_type": "application/json",
                "response_json_schema": SCHEMA,
            },
            "metadata": {"key": "k1"},
        }
    ]
    job = c.batches.create(model="gemini-2.5-flash", src=inline, config={"display_name": "inline"})
    got = c.batches.get(name=name_of(job))
    assert got.dest is not None and got.dest.inlined_responses is not None
    [resp] = got.dest.inlined_responses
    assert resp.response is not None and resp.response.text is not None
    assert resp.metadata == {"key": "k1"} and json.loads(resp.response.text)["text"]


def test_inline_images_are_checked_and_the_ledger_names_each_image(emu: Emulator) -> None:
    """The SDK sends ``inline_data`` (snake_case, bytes as base64): a valid ``image/*`` blob is
    answered and billed with its sha256; a non-image MIME type or bad base64 is a 400 line."""
    import hashlib

    c = client(emu)
    image = b"\x89PNG\r\n\x1a\n fake image bytes"

    def request(key: str, blob: dict[str, Any]) -> types.InlinedRequestDict:
        return {
            "contents": [{"parts": [{"text": "x"}, {"inline_data": blob}], "role": "user"}],
            "metadata": {"key": key},
        }

    inline = [
        request("good", {"mime_type": "image/png", "data": image}),
        request("text", {"mime_type": "text/plain", "data": image}),
    ]
    job = c.batches.create(model="gemini-2.5-flash", src=inline, config={"display_name": "img"})
    got = c.batches.get(name=name_of(job))
    assert got.dest is not None and got.dest.inlined_responses is not None
    by_key = {str((r.metadata or {})["key"]): r for r in got.dest.inlined_responses}
    good, text = by_key["good"], by_key["text"]
    assert good.response is not None and good.error is None
    assert text.error is not None and text.error.code == 400
    # Bad base64 cannot pass the SDK's own encoding: it comes in a request file, as ours do.
    bad = request_line("bad", "unused")
    bad["request"]["contents"][0]["parts"][1] = {
        "inlineData": {"mimeType": "image/png", "data": "not base64!"}
    }
    line = results(c, submit(c, [bad], name="gb-bad"))["bad"]
    assert line["error"]["code"] == 400 and "base64" in line["error"]["message"]
    [billed] = [b for b in emu.service.ledger() if b.display_name == "img"]
    assert billed.key == "good" and billed.transport == "inline"
    assert billed.image_sha256 == hashlib.sha256(image).hexdigest()


def test_list_cancel_and_delete_batches(emu: Emulator) -> None:
    emu.policy = {"jobs": [{"outcome": "STUCK"}]}
    c = client(emu)
    f = upload_png(c)
    jobs = [submit(c, [request_line("k", uri_of(f))], f"gb-{i}") for i in range(3)]
    listed = list(c.batches.list(config={"page_size": 2}))
    assert {j.name for j in listed} == {j.name for j in jobs}
    c.batches.cancel(name=name_of(jobs[0]))
    assert c.batches.get(name=name_of(jobs[0])).state == types.JobState.JOB_STATE_CANCELLED
    c.batches.delete(name=name_of(jobs[1]))
    with pytest.raises(errors.ClientError) as info:
        c.batches.get(name=name_of(jobs[1]))
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


def test_a_request_naming_a_file_never_uploaded_gets_an_error_line(emu: Emulator) -> None:
    c = client(emu)
    f = upload_png(c)
    job = submit(
        c,
        [
            request_line("good", uri_of(f)),
            request_line("bad", f"{emu.url}/v1beta/files/neveruploaded"),
        ],
    )
    lines = results(c, job)
    assert "response" in lines["good"]
    assert lines["bad"]["error"]["code"] == 403


def test_files_expire_after_48_hours_on_the_emulator_clock(emu: Emulator) -> None:
    c = client(emu)
    f = upload_png(c)
    emu.service.advance(47 * 3600)
    assert c.files.get(name=name_of(f)).name == f.name
    emu.service.advance(2 * 3600)
    with pytest.raises(errors.ClientError):
        c.files.get(name=name_of(f))
    job = submit(c, [request_line("late", uri_of(f))])
    assert "error" in results(c, job)["late"]


@pytest.mark.parametrize(
    ("outcome", "check"),
    [
        ("valid", lambda line: json.loads(_text(line))["page"] is not None),
        ("invalid_json", lambda line: _raises(json.loads, _text(line))),
        ("schema_violation", lambda line: "text" not in json.loads(_text(line))),
        ("error_line", lambda line: line["error"]["code"] == 500),
        ("safety", lambda line: _finish(line) == "SAFETY" and "content" not in _cand(line)),
        ("recitation", lambda line: _finish(line) == "RECITATION"),
        ("max_tokens", lambda line: _finish(line) == "MAX_TOKENS"),
    ],
)
def test_each_record_outcome(emu: Emulator, outcome: str, check: Any) -> None:
    emu.policy = {"records": [{"match": "CA:*", "outcome": outcome}]}
    c = client(emu)
    uri = uri_of(upload_png(c))
    lines = results(
        c, submit(c, [request_line("CA:X:2020:1", uri), request_line("TX:Y:2020:1", uri)])
    )
    assert check(lines["CA:X:2020:1"])
    assert "response" in lines["TX:Y:2020:1"]  # the rule matched by key pattern only


def test_missing_line_and_times(emu: Emulator) -> None:
    emu.policy = {"records": [{"match": "a", "outcome": "missing_line", "times": 1}]}
    c = client(emu)
    uri = uri_of(upload_png(c))
    first = results(c, submit(c, [request_line("a", uri), request_line("b", uri)], "one"))
    assert set(first) == {"b"}
    second = results(c, submit(c, [request_line("a", uri)], "two"))
    assert "response" in second["a"]  # "times": 1 fired once


@pytest.mark.parametrize("outcome", ["FAILED", "CANCELLED", "EXPIRED"])
def test_whole_job_outcomes(emu: Emulator, outcome: str) -> None:
    emu.policy = {"jobs": [{"nth": 2, "outcome": outcome}]}
    c = client(emu)
    f = upload_png(c)
    first = submit(c, [request_line("k", uri_of(f))], "one")
    second = submit(c, [request_line("k", uri_of(f))], "two")
    assert c.batches.get(name=name_of(first)).state == types.JobState.JOB_STATE_SUCCEEDED
    got = c.batches.get(name=name_of(second))
    assert got.state == getattr(types.JobState, f"JOB_STATE_{outcome}") and got.dest is None
    billed = [(b.display_name, b.key) for b in emu.service.ledger()]
    assert billed == [("one", "k")]


def test_a_stuck_job_expires_at_48_hours(emu: Emulator) -> None:
    emu.policy = {"jobs": [{"outcome": "STUCK"}]}
    c = client(emu)
    f = upload_png(c)
    job = submit(c, [request_line("k", uri_of(f))])
    emu.service.advance(47 * 3600)
    assert c.batches.get(name=name_of(job)).state == types.JobState.JOB_STATE_PENDING
    emu.service.advance(3600)
    assert c.batches.get(name=name_of(job)).state == types.JobState.JOB_STATE_EXPIRED


@pytest.mark.parametrize(
    ("status", "exc"),
    [(503, errors.ServerError), (500, errors.ServerError), (429, errors.ClientError)],
)
def test_faults_on_the_nth_call(emu: Emulator, status: int, exc: type[errors.APIError]) -> None:
    emu.policy = {"faults": [{"endpoint": "batches.get", "calls": [2], "status": status}]}
    c = client(emu)
    f = upload_png(c)
    job = submit(c, [request_line("k", uri_of(f))])
    c.batches.get(name=name_of(job))
    with pytest.raises(exc) as info:
        c.batches.get(name=name_of(job))
    assert info.value.code == status
    c.batches.get(name=name_of(job))


def test_upload_faults_match_the_display_name_and_say_final(emu: Emulator) -> None:
    emu.policy = {
        "faults": [{"endpoint": "files.upload", "match": "CA:*", "times": 2, "status": 503}]
    }
    c = client(emu)
    upload_png(c, "TX:Y:2020:1")
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            upload_png(c, "CA:X:2020:1")
    # The error carried X-Goog-Upload-Status, so the SDK did not silently re-post with sleeps.
    assert time.monotonic() - started < 1.0
    assert upload_png(c, "CA:X:2020:1").display_name == "CA:X:2020:1"


def test_a_create_fault_with_record_refuses_only_batches_holding_that_page(emu: Emulator) -> None:
    emu.policy = {
        "faults": [
            {"endpoint": "batches.create", "record": "CA:*", "status": 400, "message": "Bad page."}
        ]
    }
    c = client(emu)
    uri = uri_of(upload_png(c))
    with pytest.raises(errors.ClientError) as info:
        submit(c, [request_line("TX:Y:2020:1", uri), request_line("CA:X:2020:1", uri)], "gb-a")
    assert info.value.code == 400 and "Bad page." in str(info.value)
    assert submit(c, [request_line("TX:Y:2020:1", uri)], "gb-b").display_name == "gb-b"
    inline: list[types.InlinedRequestDict] = [
        {"contents": [{"parts": [{"text": "x"}]}], "metadata": {"key": "CA:X:2020:2"}}
    ]
    with pytest.raises(errors.ClientError):
        c.batches.create(model="gemini-2.5-flash", src=inline, config={"display_name": "gb-c"})
    assert sorted(emu.service.creates) == ["gb-b"]


def test_slow_answers_and_client_timeouts(emu: Emulator) -> None:
    emu.policy = {"faults": [{"endpoint": "files.list", "delay": 1.0, "calls": [1]}]}
    c = client(emu, timeout_ms=300)
    with pytest.raises(Exception) as info:
        list(c.files.list())
    assert "Timeout" in type(info.value).__name__
    patient = client(emu)
    assert list(patient.files.list()) == []


def test_snake_and_camel_case_bodies_are_both_accepted(emu: Emulator) -> None:
    import httpx2 as httpx

    c = client(emu)
    f = upload_png(c)
    line = request_line("k", uri_of(f))
    line["request"]["generation_config"] = line["request"].pop("generationConfig")
    line["request"]["contents"][0]["parts"][1] = {
        "file_data": {"file_uri": f.uri, "mime_type": "image/png"}
    }
    req = c.files.upload(file=io.BytesIO(json.dumps(line).encode()), config={"mime_type": "jsonl"})
    headers = {"x-goog-api-key": "test-key"}
    r = httpx.post(
        f"{emu.url}/v1beta/models/m:batchGenerateContent",
        headers=headers,
        json={"batch": {"display_name": "snake", "input_config": {"file_name": req.name}}},
    )
    assert r.status_code == 200 and r.json()["metadata"]["displayName"] == "snake"
    job = c.batches.get(name=r.json()["name"])
    text = _text(results(c, job)["k"])
    assert set(json.loads(text)) >= {"text", "page"}  # the schema under snake_case was used


def test_resources_belong_to_the_key_that_made_them(emu: Emulator) -> None:
    alice, bob = client(emu, key="alice"), client(emu, key="bob")
    f = upload_png(alice)
    with pytest.raises(errors.ClientError):
        bob.files.get(name=name_of(f))
    assert list(bob.batches.list()) == []


def test_a_wrong_api_key_is_refused_when_one_is_set() -> None:
    with Emulator(api_key="right") as e:
        wrong, right = client(e, key="wrong"), client(e, key="right")
        with pytest.raises(errors.ClientError) as info:
            list(wrong.files.list())
        assert info.value.message is not None
        assert info.value.code == 400 and "API key not valid" in info.value.message
        assert list(right.files.list()) == []


def test_the_ledger_counts_billed_lines_and_creates(emu: Emulator) -> None:
    c = client(emu)
    f = upload_png(c)
    results(c, submit(c, [request_line("a", uri_of(f)), request_line("b", uri_of(f))], "n1"))
    results(c, submit(c, [request_line("a", uri_of(f))], "n2"))
    ledger = emu.service.ledger()
    assert sorted((b.display_name, b.key) for b in ledger) == [
        ("n1", "a"),
        ("n1", "b"),
        ("n2", "a"),
    ]
    assert dict(emu.service.creates) == {"n1": 1, "n2": 1}


def test_the_emulator_binds_to_loopback_only(emu: Emulator) -> None:
    assert emu._server.server_address[0] == "127.0.0.1"


def _cand(line: dict[str, Any]) -> dict[str, Any]:
    return line["response"]["candidates"][0]


def _text(line: dict[str, Any]) -> str:
    return _cand(line)["content"]["parts"][0]["text"]


def _finish(line: dict[str, Any]) -> str:
    return _cand(line)["finishReason"]


def _raises(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except Exception:
        return True
    return False


def test_a_job_is_seen_only_with_the_key_that_made_it(emu: Emulator) -> None:
    alice, bob = client(emu, key="alice"), client(emu, key="bob")
    f = upload_png(alice)
    job = submit(alice, [request_line("a", uri_of(f))], "alice-1")
    with pytest.raises(errors.ClientError) as info:
        bob.batches.get(name=name_of(job))
    assert info.value.code == 404
    with pytest.raises(errors.ClientError):
        bob.batches.delete(name=name_of(job))
    assert alice.batches.get(name=name_of(job)).display_name == "alice-1"
    assert emu.service.foreign_lookups == 2


def test_a_batch_cannot_reference_another_keys_file(emu: Emulator) -> None:
    alice, bob = client(emu, key="alice"), client(emu, key="bob")
    f = upload_png(alice)
    req = bob.files.upload(
        file=io.BytesIO(json.dumps(request_line("a", uri_of(f))).encode()),
        config={"mime_type": "jsonl"},
    )
    job = bob.batches.create(model="m", src=name_of(req), config={"display_name": "cross"})
    done = results(bob, job)
    assert "error" in done["a"] or "response" not in done["a"]


def test_per_key_limits_answer_429_for_that_key_only() -> None:
    policy = {
        "timing": {"pending_seconds": 30},
        "limits": [
            {"key": "small", "max_active_jobs": 1},
            {"key": "tight", "max_enqueued_tokens": 300},
        ],
    }
    with Emulator(policy) as e:
        small, other, tight = client(e, key="small"), client(e, key="other"), client(e, key="tight")
        for c in (small, other, tight):
            f = upload_png(c)
            submit(c, [request_line("a", uri_of(f))], "first")
        with pytest.raises(errors.ClientError) as info:
            submit(small, [request_line("b", uri_of(upload_png(small)))], "second")
        assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
        assert "concurrent batch jobs" in (info.value.message or "")
        with pytest.raises(errors.ClientError) as info:
            submit(tight, [request_line("b", uri_of(upload_png(tight)))], "second")
        assert info.value.code == 429 and "enqueued tokens" in (info.value.message or "")
        submit(other, [request_line("b", uri_of(upload_png(other)))], "second")
        e.service.advance(60)  # the first jobs end: room again
        submit(small, [request_line("b", uri_of(upload_png(small)))], "third")
