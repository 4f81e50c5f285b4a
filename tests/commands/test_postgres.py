"""The operator commands on a PostgreSQL log: ``migrate-to-postgres`` copies a SQLite log event
for event and proves it equal; then, with ``[database] url`` in the config, the read commands,
``rebuild-projections --verify`` and ``replay.py --verify-chain`` run on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from commands.cli import cli
from eventlog.events import RunStarted
from projections import open_store, snapshot_rows
from tests.backends import StoreFactory
from tests.commands.conftest import invoke
from tests.conftest import file_digest, run_cli
from tests.postgres import new_schema_url
from tests.scenario import B, C, all_events, scenario


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "gb.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    return config


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_migrate_copies_the_log_event_for_event_and_proves_it(
    populated: Path, postgres_server: str, tmp_path: Path
) -> None:
    url = new_schema_url(postgres_server)
    before = file_digest(populated)
    result = invoke(populated, "migrate-to-postgres", url)
    assert result.exit_code == 0, result.output
    n = len(all_events())
    assert f"copied {n} events from {populated} to " in result.output
    assert f"hash chain equal through event {n}" in result.output
    assert "projections equal: " in result.output
    assert file_digest(populated) == before  # the source is only read
    with open_store(populated, write=False) as src, open_store(url) as dst:
        assert list(dst.read_raw()) == list(src.read_raw())
        assert snapshot_rows(dst) == snapshot_rows(src)
    # Resumable: a second run copies nothing and proves the same.
    again = invoke(populated, "migrate-to-postgres", url)
    assert again.exit_code == 0 and "copied 0 events" in again.output


def test_migrate_refuses_a_database_holding_another_log(
    populated: Path, postgres_server: str
) -> None:
    url = new_schema_url(postgres_server)
    with open_store(url, create=True) as other:
        other.append([RunStarted(run_id="elsewhere")], actor="run:elsewhere")
    result = invoke(populated, "migrate-to-postgres", url)
    assert result.exit_code == 1
    assert "already holds 1 events that are not a prefix" in result.output
    with open_store(url) as other:
        assert other.last_seq() == 1


def test_operator_commands_run_on_a_postgresql_log(
    populated: Path, postgres_server: str, tmp_path: Path
) -> None:
    url = new_schema_url(postgres_server)
    assert invoke(populated, "migrate-to-postgres", url).exit_code == 0
    config = _config(tmp_path, url)
    n = len(all_events())
    status = json.loads(_cli(config, "status", "--json", "--no-scan").output)
    sqlite_status = json.loads(invoke(populated, "status", "--json", "--no-scan").output)
    assert status["events"] == n
    assert "password" not in status["database"] and status["database"].startswith("postgresql")
    for key in ("active_batches", "open_intents", "in_flight", "written", "dead_letters"):
        assert status[key] == sqlite_status[key], key
    verify = _cli(config, "rebuild-projections", "--verify")
    assert verify.exit_code == 0 and f"through event {n}" in verify.output
    assert _cli(config, "rebuild-projections").exit_code == 0
    summary = _cli(config, "analyze-failures", "--summary")
    assert summary.exit_code == 0
    assert summary.output == invoke(populated, "analyze-failures", "--summary").output
    for key in (B, C):  # failure_logs_of binds the record key by position
        one = _cli(config, "analyze-failures", "--record-key", key)
        assert one.exit_code == 0, one.output
        assert one.output == invoke(populated, "analyze-failures", "--record-key", key).output
    report = _cli(config, "report", "--last")
    assert report.exit_code == 0
    assert report.output == invoke(populated, "report", "--last").output
    chain = run_cli("--config", str(config), "--verify-chain", script="replay.py")
    assert chain.code == 0 and f"hash chain intact through event {n}" in chain.out


def test_a_bad_database_url_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "gb.toml"
    config.write_text('[database]\nurl = "mysql://x"\n')
    result = _cli(config, "status")
    assert result.exit_code == 1
    assert "[database] url" in result.output and "postgresql://" in result.output


def test_the_read_side_answers_the_same_on_both_backends(
    store_factory: StoreFactory,
) -> None:
    """Sums come back as integers (PostgreSQL's sum of a BIGINT is a NUMERIC), and the spend
    status computes from them, on either backend."""
    from commands.config import Config
    from commands.views.status import status
    from eventlog.events import RecordValidated
    from projections import queries

    store = store_factory()
    for actor, group in scenario():
        store.append(group, actor=actor)
    store.append(
        [
            RecordValidated(
                record_key=f"S:X:2020:{i}",
                batch_id="batches/u",
                output_path=f"o/{i}.json",
                prompt_tokens=1000 + i,
                output_tokens=200,
                model="gemini-2.5-flash",
            )
            for i in range(3)
        ],
        actor="run:usage",
    )
    [usage] = queries.usage_of_run(store, "usage")
    assert (usage.results, usage.prompt_tokens, usage.output_tokens) == (3, 3003, 600)
    [total] = queries.usage_by_model(store)
    assert type(total.prompt_tokens) is int and total.prompt_tokens == 3003
    assert queries.usage_totals(store, "gemini-2.5-flash").output_tokens == 600
    s = status(store, Config(), scan=False)
    assert s.spend is not None and s.events == store.last_seq()


def test_a_worker_role_granted_as_the_readme_says_can_append_but_never_rewrite(
    postgres_server: str,
) -> None:
    """The README's production split: one role owns the tables, workers run as another with
    SELECT and INSERT on ``events``. That role appends (projections folded) and is refused every
    UPDATE, DELETE and TRUNCATE of the log, and disabling the refusing trigger (owner only)."""
    import uuid
    from urllib.parse import parse_qs, urlsplit

    import psycopg

    url = new_schema_url(postgres_server)
    schema = parse_qs(urlsplit(url).query)["options"][0].split("=")[1]
    owner = open_store(url, create=True)
    groups = scenario()
    for actor, group in groups[:3]:
        owner.append(group, actor=actor)
    owner.close()
    role = f"worker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for statement in (
            f"CREATE ROLE {role} LOGIN",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.events FROM {role}",
        ):
            conn.execute(statement)
    worker_url = url.replace("postgresql://postgres@", f"postgresql://{role}@")
    worker = open_store(worker_url)
    before = worker.last_seq()
    for actor, group in groups[3:5]:
        worker.append(group, actor=actor)
    assert worker.last_seq() > before and worker.verify_chain() is None
    worker.close()
    with psycopg.connect(worker_url, autocommit=True) as conn:
        for statement in (
            "UPDATE events SET actor = 'forged' WHERE seq = 1",
            "DELETE FROM events WHERE seq = 1",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER USER",
        ):
            try:
                conn.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                pass  # refused by the grants, before any trigger runs
            else:
                raise AssertionError(f"the worker role ran {statement!r}")
    with open_store(url) as check:
        assert check.verify_chain() is None
        assert check.query("SELECT count(*) FROM events WHERE actor = 'forged'") == [(0,)]


def test_nuke_backs_a_postgresql_log_up_into_sqlite_then_starts_over_and_it_restores(
    populated: Path, postgres_server: str, tmp_path: Path
) -> None:
    """With ``[database] url``: ``--dry-run`` counts the PostgreSQL log and changes nothing;
    ``--confirm`` copies it event for event into a SQLite backup (chain verified, same last
    hash), drops its tables and starts an empty log; the local SQLite file is not touched; the
    backup restores with ``migrate-to-postgres``; a live run's lock refuses it in one line."""
    from commands.worker.runlock import hold_in_database
    from eventlog.store import EventStore

    url = new_schema_url(postgres_server)
    assert invoke(populated, "migrate-to-postgres", url).exit_code == 0
    n = len(all_events())
    with open_store(url) as pg:
        last_hash = pg.query_one("SELECT hash FROM events ORDER BY seq DESC LIMIT 1")
        tables = snapshot_rows(pg)
    local = tmp_path / "local" / "gb.db"
    config = tmp_path / "gb.toml"
    config.write_text(f'[paths]\ndatabase = "{local}"\n[database]\nurl = "{url}"\n')
    before = file_digest(populated)

    dry = _cli(config, "nuke", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"  events  {n}" in dry.output and "password" not in dry.output

    with open_store(url) as holder:  # a live run elsewhere holds the log's run lock
        hold_in_database(holder)
        refused = _cli(config, "nuke", "--confirm")
        assert refused.exit_code == 1 and "another run holds the lock" in refused.output
        assert holder.last_seq() == n

    done = _cli(config, "nuke", "--confirm", "--recreate-tables")
    assert done.exit_code == 0, done.output
    [backup] = list(local.parent.glob("gb.backup-*.db"))
    assert f"backed up the old log ({n} events) to {backup}" in done.output
    with EventStore.open(backup) as copy:
        assert copy.last_seq() == n and copy.verify_chain() is None
        assert copy.query_one("SELECT hash FROM events ORDER BY seq DESC LIMIT 1") == last_hash
    with open_store(url) as pg:
        assert pg.last_seq() == 0  # an empty log, its tables created
    assert file_digest(populated) == before and not local.exists()

    restored = invoke(backup, "migrate-to-postgres", url)
    assert restored.exit_code == 0, restored.output
    with open_store(url) as pg:
        assert pg.last_seq() == n and pg.verify_chain() is None
        assert snapshot_rows(pg) == tables


def test_the_prefect_flows_active_batches_table_reads_a_postgresql_log(
    populated: Path, postgres_server: str, tmp_path: Path
) -> None:
    """The flow publishes ``active_batch_rows(config.log_location)``: on a ``[database] url``
    the rows come from PostgreSQL, the same as from the SQLite log it was copied from."""
    import pytest

    pytest.importorskip("prefect")
    from commands.config import load_config
    from commands.integrations.prefect_flow import active_batch_rows

    url = new_schema_url(postgres_server)
    assert invoke(populated, "migrate-to-postgres", url).exit_code == 0
    config = load_config(_config(tmp_path, url))
    assert config.log_location == url
    expected = active_batch_rows(populated)
    populated.unlink()  # what is read is the PostgreSQL log, not a local file
    assert active_batch_rows(config.log_location, scratch=config.paths.database) == expected
    assert not populated.exists()


def test_two_runs_on_one_postgresql_log_from_two_machines_the_second_is_refused(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two machines share no lock file, only the log: a run holds the log's own lock (an
    advisory lock) for its whole life, so a second run elsewhere is refused in one line naming
    the holder, and status there sees the first as still running, not dead."""
    import os

    from commands.config import load_config
    from commands.worker.runlock import hold_in_database, run_lock_held
    from commands.worker.session import session
    from gemini_emulator.service import Service
    from tests.fakes import EmulatorPort
    from tests.pipeline import write_config

    url = new_schema_url(postgres_server)
    monkeypatch.setenv("E2E_GEMINI_KEY", "e2e-test-key-0123456789")
    for m in ("machine-a", "machine-b"):
        (tmp_path / m).mkdir()
    a, b = (
        load_config(write_config(tmp_path / m, "http://127.0.0.1:9", database={"url": url}))
        for m in ("machine-a", "machine-b")
    )
    assert a.paths.database != b.paths.database  # each its own lock file: they never meet
    assert b.source is not None
    b_config = b.source
    with session(a, command="run", gateway=EmulatorPort(Service())) as s:
        second = _cli(b_config, "run", "--once")
        assert second.exit_code == 1, second.output
        [line] = second.output.splitlines()
        assert "another run holds the lock on this log" in line
        assert f"pid {os.getpid()}" in line and "postgresql://" in line
        status = json.loads(_cli(b_config, "status", "--json", "--no-scan").output)
        assert status["last_run"]["run_id"] == s.run_id and status["last_run"]["running"]
    with open_store(url) as store:
        assert not run_lock_held(store)  # released with the run's connection
        started = [r.event for r in store.read() if isinstance(r.event, RunStarted)]
        assert [e.run_id for e in started] == [s.run_id]
        hold_in_database(store)  # free again
        assert run_lock_held(store)
    status = json.loads(_cli(b_config, "status", "--json", "--no-scan").output)
    assert status["last_run"]["outcome"] == "ok" and not status["last_run"]["running"]
