"""The dashboard's panels in SQL (SQLite: Datasette reads SQLite only): what may be stuck, what
is failing, and the progress and activity the cards and charts draw.

Each answers from the projections, never from a scan of ``events`` (the stuck panel reads the
log's last row only): the aggregates of ``hourly_activity`` (a day is 24 of its rows), the
handful of rows of ``active_batches``, ``submission_intents``, ``submission_quota``, ``workers``
and ``leases``, and the newest rows of ``failure_logs`` and ``dead_letters``. Where ``status`` or
``analyze-failures`` asks the same question the text is theirs (wrapped, never rewritten), and
the stuck panel marks exactly what :mod:`commands.rules.stuck` marks (the tests hold the two
equal).
"""

from __future__ import annotations

from collections.abc import Sequence

from projections import queries
from projections.sql_text import days_cte, literal

__all__ = [
    "HOURS_SHOWN",
    "dead_letters_sql",
    "failures_in_pages_sql",
    "failures_per_hour_sql",
    "latest_failures_sql",
    "pages_by_status_sql",
    "progress_tiles_sql",
    "stuck_sql",
    "written_per_day_sql",
    "written_per_hour_sql",
]

#: The hours the per-hour charts show, the current one included (zero-filled: a chart of one
#: busy hour is one narrow bar among empty hours, never a full-width block).
HOURS_SHOWN = 48


def _printf_g(minutes: str) -> str:
    return f"printf('%g', {minutes})"


def stuck_sql(now: str, projects: Sequence[str], minutes: float, batch_hours: float) -> str:
    """What may be stuck, at a glance: each active batch (its state and the service's counts),
    open intent, quota hold (of the configured ``projects``), worker (its last renewal) and the
    log's last event, with its age; ``stuck`` says why when it is past its threshold, as
    ``status`` marks it (``:stuck_after`` minutes, empty: ``minutes``; batches ``batch_hours``).
    Marked rows first, oldest first."""
    names = ", ".join(literal(p) for p in projects) or "NULL"
    after = f"{_printf_g('minutes')} || ' min'"
    items = (
        "SELECT 'batch' AS kind, batch_id AS name, state || ': ' || succeeded || ' done, ' || "
        "failed || ' failed, ' || pending || ' pending of ' || record_count || ' pages (' || "
        f"project || ')' AS detail, submitted_at AS since, {batch_hours!r} AS limit_hours, "
        f"state || {literal(f' for over {batch_hours:g} h')} AS why FROM active_batches "
        "UNION ALL SELECT 'intent', display_name, 'create sent for ' || record_count || "
        "' pages (' || project || '), its outcome unknown', intended_at, minutes / 60, "
        f"'its create''s outcome unknown for over ' || {after} FROM submission_intents, clock "
        "UNION ALL SELECT 'quota hold', project, 'held back by ' || reason || ', next try after '"
        " || retry_after || ': ' || message, held_since, minutes / 60, "
        f"'creates held back for over ' || {after} FROM submission_quota, clock "
        f"WHERE scope = 'creates' AND held_since IS NOT NULL AND project IN ({names}) "
        "UNION ALL SELECT 'worker', w.worker, 'run ' || w.run_id || ', lease to ' || w.expires_at "
        "|| coalesce(', partitions ' || (SELECT group_concat(partition, ', ') FROM (SELECT "
        "partition FROM leases l WHERE l.worker = w.worker ORDER BY partition)), ''), "
        "w.renewed_at, NULL, CASE WHEN w.expires_at <= now AND EXISTS (SELECT 1 FROM leases l "
        "WHERE l.worker = w.worker) THEN 'lease lapsed' END FROM workers w, clock "
        "UNION ALL SELECT 'log', 'last event', 'event ' || seq || ' (' || type || ')', ts, "
        "CASE WHEN (SELECT count(*) FROM active_batches) + (SELECT count(*) FROM "
        "submission_intents) > 0 THEN minutes / 60 END, "
        f"'nothing appended for over ' || {after} FROM (SELECT seq, ts, type FROM events "
        "ORDER BY seq DESC LIMIT 1), clock"
    )
    age = "(julianday(now) - julianday(since)) * 24"
    return (
        f"WITH clock AS MATERIALIZED (SELECT {now} AS now, "
        f"CAST(coalesce(nullif(:stuck_after, ''), {minutes!r}) AS REAL) AS minutes), "
        f"items AS ({items}) SELECT kind, name, detail, since, round({age}, 2) AS age_hours, "
        f"CASE WHEN kind = 'worker' THEN coalesce(why, '') WHEN limit_hours IS NOT NULL AND "
        f"{age} > limit_hours THEN why ELSE '' END AS stuck FROM items, clock "
        "ORDER BY stuck = '', age_hours DESC, kind, name"
    )


def _shell_word(column: str) -> str:
    """``column`` as one shell word (``shlex.quote``'s rule)."""
    quote = literal("'\"'\"'")
    return (
        f"CASE WHEN {column} = '' OR {column} GLOB '*[^A-Za-z0-9_@%+=:,./-]*' "
        f"THEN '''' || replace({column}, '''', {quote}) || '''' ELSE {column} END"
    )


def dead_letters_sql(command: str) -> str:
    """Every dead letter, newest first, with its last error and the ``reset-failures`` command
    that makes it eligible again (``command``: ``python -m commands`` and the config; the
    narrowest filter the command takes: the page's state, school and year)."""
    year = "CAST(c.year AS TEXT)"
    reset = (
        f"{literal(command + ' reset-failures --states ')} || {_shell_word('c.state')} || "
        f"' --schools ' || {_shell_word('c.school')} || "
        f"coalesce(' --year-start ' || {year} || ' --year-end ' || {year}, '')"
    )
    return (
        "SELECT d.record_key, d.failures, d.max_retries, d.dead_lettered_at, "
        "f.error_type AS last_error_type, f.message AS last_error, "
        f"f.failed_at AS last_failed_at, {reset} AS reset_command "
        "FROM dead_letters d LEFT JOIN failure_logs f "
        "ON f.seq = (SELECT max(seq) FROM failure_logs WHERE record_key = d.record_key) "
        "LEFT JOIN failure_counts c ON c.record_key = d.record_key "
        "ORDER BY d.dead_lettered_seq DESC"
    )


def latest_failures_sql(limit: int) -> str:
    """The latest ``limit`` failures logged, newest first, with their messages and excerpts."""
    return (
        "SELECT failed_at, record_key, error_type, attempt, message, excerpt FROM failure_logs "
        f"ORDER BY seq DESC LIMIT {int(limit)}"
    )


def failures_in_pages_sql(column: str) -> str:
    """Failures per ``error_type``, ``state`` or ``school`` counted in pages (the records that
    failed), with the attempts beside: ``analyze-failures``' own text, reordered by pages."""
    if column == "school":
        inner, keys = queries.FAILURES_BY_SCHOOL_SQL, "state, school"
    else:
        inner, keys = queries.FAILURE_GROUPS_SQL[column], column
    return (
        f"SELECT {keys}, records AS pages, failures AS attempts FROM ({inner}) "
        f"ORDER BY pages DESC, attempts DESC, {keys}"
    )


def _hours(now: str, count: int) -> str:
    """``span(hour)``: the ``count`` hour buckets up to ``now``'s."""
    return (
        f"clock AS MATERIALIZED (SELECT {now} AS now), span(n, hour) AS (SELECT 0, "
        "strftime('%Y-%m-%dT%H', now) FROM clock UNION ALL SELECT n + 1, "
        "strftime('%Y-%m-%dT%H', now, '-' || (n + 1) || ' hours') FROM span, clock "
        f"WHERE n < {count - 1})"
    )


def written_per_hour_sql(now: str) -> str:
    """Pages written in each of the last :data:`HOURS_SHOWN` hours (0 for a quiet one), newest
    first, from ``hourly_activity``."""
    return (
        f"WITH RECURSIVE {_hours(now, HOURS_SHOWN)} SELECT s.hour || ':00:00Z' AS hour, "
        "coalesce((SELECT sum(written) FROM hourly_activity h WHERE h.hour = s.hour), 0) "
        "AS pages FROM span s ORDER BY s.hour DESC"
    )


def failures_per_hour_sql(now: str) -> str:
    """Failed attempts and dead letters in each of the last :data:`HOURS_SHOWN` hours, newest
    first (a ``kind`` row each), from ``hourly_activity``."""
    per_hour = (
        "SELECT s.hour, coalesce(sum(h.failed), 0) AS failed, "
        "coalesce(sum(h.dead_lettered), 0) AS dead FROM span s "
        "LEFT JOIN hourly_activity h ON h.hour = s.hour GROUP BY s.hour"
    )
    return (
        f"WITH RECURSIVE {_hours(now, HOURS_SHOWN)}, per_hour AS ({per_hour}) "
        "SELECT hour || ':00:00Z' AS hour, 'failed attempts' AS kind, failed AS pages "
        "FROM per_hour UNION ALL SELECT hour || ':00:00Z', 'dead-lettered', dead FROM per_hour "
        "ORDER BY hour DESC, kind"
    )


def written_per_day_sql(now: str) -> str:
    """Pages written per UTC day over the whole job (0 for a quiet day; :func:`days_cte`'s
    span), newest first, from ``hourly_activity``."""
    return (
        "WITH RECURSIVE per_day AS (SELECT substr(hour, 1, 10) AS day, sum(written) AS pages "
        f"FROM hourly_activity GROUP BY day), {days_cte(now, '(SELECT min(day) FROM per_day)')} "
        "SELECT s.day || 'T00:00:00Z' AS day, coalesce(p.pages, 0) AS pages "
        "FROM span s LEFT JOIN per_day p ON p.day = s.day ORDER BY s.day DESC"
    )


def pages_by_status_sql(progress: str) -> str:
    """``status``'s page figures, one row each (``progress``: :func:`progress_sql`'s text)."""
    rows = [
        ("written", "written"),
        ("in flight", "in_flight"),
        ("retrying", "retrying"),
        ("dead-lettered", "dead_letters"),
        ("to go", "to_go"),
    ]
    parts = " UNION ALL ".join(
        f"SELECT {i} AS position, {literal(name)} AS status, {column} AS pages FROM p"
        for i, (name, column) in enumerate(rows)
    )
    return f"WITH p AS MATERIALIZED ({progress}) {parts}"


def _money(column: str, currency: str) -> str:
    """``column`` as ``commands.rules.cost.money`` writes it (``$0.0039``, ``$1,234.56``)."""
    symbol = literal("$" if currency == "USD" else f"{currency} ")
    cents = f"printf('%.2f', {column})"
    return (
        f"CASE WHEN {column} IS NULL THEN 'unknown' WHEN {column} < 1 THEN {symbol} || "
        f"printf('%.4f', {column}) ELSE {symbol} || printf('%,d', CAST(substr({cents}, 1, "
        f"length({cents}) - 3) AS INTEGER)) || substr({cents}, -3) END"
    )


def progress_tiles_sql(progress: str, currency: str) -> str:
    """The progress card's figures, a tile each (``row``, ``col``, ``label``, ``value``,
    ``note``, and ``aria``: the three as one sentence), from ``progress`` (:func:`progress_sql`).
    """
    count = "printf('%,d', {})".format
    finish = (
        "CASE WHEN expected_finish IS NOT NULL THEN substr(expected_finish, 1, 10) "
        "WHEN to_go = 0 THEN 'done' WHEN hours_to_go IS NOT NULL THEN 'after 9999' "
        "ELSE 'unknown' END"
    )
    finish_note = (
        "CASE WHEN expected_finish IS NOT NULL THEN substr(expected_finish, 12, 5) || "
        "' UTC, in ' || printf('%.1f', hours_to_go) || ' h' WHEN to_go = 0 THEN 'nothing to go' "
        "WHEN hours_to_go IS NOT NULL THEN 'at this rate' "
        "ELSE 'nothing written in the last day' END"
    )
    tiles = [
        ("Pages known", count("known"), "'counted ' || coalesce(substr(counted_at, 1, 10), '-')"),
        ("Written", count("written"), "'pages'"),
        ("In flight", count("in_flight"), "'in active batches'"),
        ("To go", count("to_go"), "'in flight and retrying included'"),
        ("Retrying", count("retrying"), "'failed, to be sent again'"),
        ("Dead-lettered", count("dead_letters"), "'at max_retries'"),
        ("Rejected inputs", count("rejected_inputs"), "'files or folders skipped'"),
        ("Done", "coalesce(percent_done || '%', '-')", "'of the pages known'"),
        ("Pages/h, last hour", "printf('%.1f', pages_per_hour_last_hour)", "''"),
        ("Pages/h, last day", "printf('%.1f', pages_per_hour_last_day)", "''"),
        ("Expected finish", finish, finish_note),
        ("Spend", _money("spend", currency), "'so far, estimated'"),
        ("Wasted", _money("wasted", currency), "'on answers that failed'"),
        ("Cost to go", _money("cost_to_go", currency), "'at the cost per page so far'"),
    ]
    per_row = 7
    parts = " UNION ALL ".join(
        f"SELECT {i // per_row} AS row, {i % per_row} AS col, {literal(label)} AS label, "
        f"{value} AS value, {note} AS note FROM p"
        for i, (label, value, note) in enumerate(tiles)
    )
    return (
        f"WITH p AS MATERIALIZED ({progress}), tiles AS ({parts}) "
        "SELECT *, label || ': ' || value || CASE WHEN note != '' THEN ' (' || note || ')' "
        "ELSE '' END AS aria FROM tiles"
    )
