"""A merge that exceeds the server's disk, memory or a configured limit (issue 16, "bad
input"): one sentence naming the phase that was running and the setting to change, exit 1,
the previous state intact, and a rerun with the limit lifted gives the answer of a run that
never failed. Real PostgreSQL, the real CLI: temp_file_limit is reached for real (work_mem at
its minimum makes the merge spill); disk full, out of memory and an exhausted lock table are
raised by the server from a trigger on the master table (exhausting them for real would
starve the other databases of the shared test server)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from syncpipe import synth
from syncpipe.core.errors import EXIT_FAILED
from syncpipe.db.errors import classify, resource_error
from tests.agents import Sources
from tests.conftest import ROOT
from tests.helpers import CliResult, Invoke, fetch, one, require_language

#: The merge's work_mem at PostgreSQL's minimum: its sorts and hashes spill to temporary files.
SPILL = {"SYNCPIPE_MERGE_WORK_MEM": "64kB"}

#: The phases a merge reports (sql/functions/030_member_pipeline.sql and 040_merge.sql).
PHASES = {
    "explode_members",
    "store_members",
    "pending",
    "normalize",
    "candidates",
    "shared_contacts",
    "links",
    "clusters",
    "review",
    "agents",
    "lineage",
    "review_queue",
    "golden_records",
    "commit",
}


def _error(result: CliResult) -> str:
    """The one "Error: ..." sentence the CLI printed on stderr."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("Error: ")


def _one_sentence(message: str) -> None:
    assert message.endswith("."), message
    assert ". " not in message and "\n" not in message, message


def _database(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])


def _set_limit(dsn: str, value: str | None) -> None:
    """temp_file_limit for new sessions of this test's own database (a superuser setting)."""
    name = sql.Identifier(_database(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        if value is None:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET temp_file_limit").format(name))
        else:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET temp_file_limit = {}").format(
                    name, sql.Literal(value)
                )
            )


def _state(dsn: str) -> dict[str, Any]:
    """A checksum of every table a merge may write (all but its log), and the work tables."""
    tables = fetch(
        dsn,
        """
        SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
        WHERE schemaname IN ('public', 'bronze', 'syncpipe', 'syncpipe_internal')
          AND (schemaname, tablename) <> ('public', 'unified_merge_logs')
        ORDER BY 1
        """,
    )
    state: dict[str, Any] = {}
    for (table,) in tables:
        state[table] = one(
            dsn,
            f"SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
            f" FROM {table} t",
        )
    state["syncpipe_work"] = fetch(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'syncpipe_work'"
    )
    return state


def _outcome(dsn: str) -> tuple[Any, ...]:
    """What a merge made of the sources, independent of ids: each live agent by the source
    records it holds, and each review item by the records of its two agents. (A failed run
    used up sequence values, which PostgreSQL never rolls back: a member is known by its
    record hash, not its id.)"""
    records = """
        (SELECT array_agg(s.source || ':' || coalesce(m.record_hash, s.source_id) ORDER BY 1)
         FROM unified_agent_sources s
         LEFT JOIN unified_company_member m
                ON s.source = 'company_member' AND m.id::text = s.source_id
         WHERE s.agent_id = {})"""
    agents = fetch(
        dsn,
        f"""
        SELECT {records.format("a.agent_id")},
               a.full_name, a.emails, a.phone_numbers, a.source_team_id,
               a.confidence_score, a.needs_review
        FROM new_unified_agents a WHERE a.merged_into IS NULL
        """,
    )
    reviews = fetch(
        dsn,
        f"""
        SELECT {records.format("q.agent_id")}, {records.format("q.candidate_agent_id")},
               q.rule, q.confidence, q.status
        FROM merge_review_queue q
        """,
    )
    key = repr
    return tuple(sorted(agents, key=key)), tuple(sorted(reviews, key=key))


def _last_phase_before_failure(dsn: str) -> str | None:
    """Run the member pipeline and the merge batch as the service does (dry, rolled back) and
    return the last phase the functions announced before the server refused to go on."""
    from syncpipe.services.merge.service import MergeService
    from syncpipe.settings import Settings

    work_mem = SPILL["SYNCPIPE_MERGE_WORK_MEM"]
    settings = Settings(_env_file=None, merge_work_mem=work_mem)  # type: ignore[call-arg]
    service = MergeService(settings, None)  # type: ignore[arg-type]  # (options only)
    options = psycopg.types.json.Jsonb({**service.options(dry_run=True), "keep_work": True})
    phases: list[str] = []

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if text.startswith("syncpipe.phase "):
            phases.append(text.split()[1])

    with psycopg.connect(dsn) as conn:
        conn.add_notice_handler(notice)
        try:
            conn.execute("SELECT public.run_unified_member_pipeline(%s)", (options,))
            conn.execute("SELECT public.run_unified_merge_batch(%s)", (options,))
        except psycopg.errors.ConfigurationLimitExceeded:
            conn.rollback()
        else:
            pytest.fail("the limit was not reached")
    return phases[-1] if phases else None


def _more_data(folder: Path, persons: int = 250) -> Path:
    """Generated teams (pages and feed) under file names of their own."""
    out = folder / "generated"
    synth.generate(out, synth.Config(persons=persons, seed=16))
    folder.mkdir(parents=True, exist_ok=True)
    shutil.move(out / "new_agents.csv", folder / "new_agents_more.csv")
    shutil.move(out / "raw_company_info.csv", folder / "raw_company_info_more.csv")
    shutil.rmtree(out)
    return folder


def _sample(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("new_agents.csv", "raw_company_info.csv"):
        shutil.copy(ROOT / "data" / name, folder / name)
    return folder


def test_temp_file_limit_names_the_phase_and_changes_nothing(
    invoke: Invoke, deployed_db: str, twin_db: str, tmp_path: Path
) -> None:
    sample, more = _sample(tmp_path / "sample"), _more_data(tmp_path / "more")
    for dsn in (deployed_db, twin_db):  # a merged database, then new pages and feed rows
        invoke(["load", str(sample)], dsn=dsn)
        invoke(["merge"], dsn=dsn)
        invoke(["load", str(more)], dsn=dsn)
    before = _state(deployed_db)
    assert before["public.new_unified_agents"].split(":")[0] != "0"
    last_log = one(deployed_db, "SELECT max(id) FROM unified_merge_logs")

    _set_limit(deployed_db, "0")
    dry = invoke(["merge", "--dry-run"], dsn=deployed_db, env=SPILL, code=EXIT_FAILED)
    failed = invoke(["merge"], dsn=deployed_db, env=SPILL, code=EXIT_FAILED)
    message = _error(failed)
    assert _error(dry) == message  # raised by the driver, or returned by the function
    _one_sentence(message)
    phase = re.search(r'in phase "([a-z_:]+)"', message)
    assert phase is not None, message
    assert phase.group(1) in PHASES
    assert phase.group(1) == _last_phase_before_failure(deployed_db)
    assert "temp_file_limit = 0kB reached" in message
    assert "raise temp_file_limit" in message and "nothing was changed" in message

    assert _state(deployed_db) == before  # agents, lineage, queue, members, page flags
    assert before["syncpipe_work"] == []
    logs = fetch(
        deployed_db,
        "SELECT run_kind, status, error_message FROM unified_merge_logs WHERE id > %s ORDER BY id",
        (last_log,),
    )
    assert [row[:2] for row in logs] == [("member_pipeline", "failed"), ("merge", "failed")]
    assert all("temp_file_limit" in row[2] and phase.group(0) in row[2] for row in logs)

    _set_limit(deployed_db, None)
    invoke(["merge"], dsn=deployed_db, env=SPILL)
    invoke(["merge"], dsn=twin_db, env=SPILL)
    assert _outcome(deployed_db) == _outcome(twin_db)
    assert (
        one(deployed_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'syncpipe_work'") == 0
    )


def test_full_run_stops_at_the_merge_naming_phase_and_setting(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    data = _more_data(tmp_path / "data", persons=150)
    env = {**SPILL, "SYNCPIPE_DATA_DIR": str(data)}
    _set_limit(deployed_db, "0")
    failed = invoke(["deploy", "--full"], dsn=deployed_db, env=env, code=1)
    message = _error(failed)
    assert message.startswith("the full run stopped at merge: The merge ran out of temporary")
    _one_sentence(message.split(": ", 1)[1])
    assert re.search(r'in phase "[a-z_]+" \(temp_file_limit = 0kB reached\)', message), message
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 0
    assert one(deployed_db, "SELECT count(*) FROM unified_company_member") == 0

    _set_limit(deployed_db, None)
    invoke(["deploy", "--full"], dsn=deployed_db, env=env)
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") > 0


#: A server error raised where the merge meets it: a trigger on a table a phase writes (the
#: functions catch the error and return it with its SQLSTATE), or a custom pipeline step
#: (SYNCPIPE_PIPELINE_STEPS; the driver raises it).
_REFUSE = """
CREATE FUNCTION public.refuse() RETURNS %(returns)s LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = %(code)s, MESSAGE = %(message)s, HINT = %(hint)s;
END $$;
"""
_TRIGGER = """
CREATE TRIGGER refuse BEFORE INSERT ON public.new_unified_agents
    FOR EACH ROW EXECUTE FUNCTION public.refuse();
"""

#: (SQLSTATE name, the server's own message and hint for it, what the sentence must say)
SERVER_ERRORS = [
    pytest.param(
        "disk_full",
        'could not extend file "base/16384/16385": No space left on device',
        "Check free disk space.",
        ["ran out of disk space on the server", "free disk space on the server"],
        id="disk_full",
    ),
    pytest.param(
        "out_of_memory",
        "out of memory",
        "",
        ["ran out of server memory", "lower SYNCPIPE_MERGE_WORK_MEM"],
        id="out_of_memory",
    ),
    pytest.param(
        "out_of_memory",
        "out of shared memory",
        "You might need to increase max_locks_per_transaction.",
        ["ran out of shared memory for locks", "raise max_locks_per_transaction"],
        id="out_of_shared_memory",
    ),
]


@pytest.mark.parametrize(("code", "message", "hint", "says"), SERVER_ERRORS)
@pytest.mark.parametrize("where", ["trigger", "step"])
def test_server_out_of_resources_names_phase_and_setting(
    invoke: Invoke,
    deployed_db: str,
    tmp_path: Path,
    code: str,
    message: str,
    hint: str,
    says: list[str],
    where: str,
) -> None:
    """Returned by the merge function that caught it, or raised by the driver: the same
    sentence, naming the phase that met the error."""
    invoke(["load", str(_sample(tmp_path / "sample"))], dsn=deployed_db)
    with psycopg.connect(deployed_db, autocommit=True) as conn:

        def literal(value: str) -> str:
            return sql.Literal(value).as_string(conn)

        conn.execute(
            (
                _REFUSE.replace("%(returns)s", "trigger" if where == "trigger" else "void")
                .replace("%(code)s", literal(code))
                .replace("%(message)s", literal(message))
                .replace("%(hint)s", literal(hint))
                + (_TRIGGER if where == "trigger" else "")
            ).encode()
        )
    env = {"SYNCPIPE_PIPELINE_STEPS": '["public.refuse"]'} if where == "step" else {}
    before = _state(deployed_db)
    failed = invoke(["merge"], dsn=deployed_db, env=env, code=EXIT_FAILED)
    sentence = _error(failed)
    _one_sentence(sentence)
    assert sentence.startswith("The merge ran out of"), sentence
    phase = "agents" if where == "trigger" else "step:public.refuse"
    assert f'in phase "{phase}"' in sentence, sentence
    for words in says:
        assert words in sentence
    assert sentence.endswith("and run it again; nothing was changed.")
    assert _state(deployed_db) == before
    logs = fetch(deployed_db, "SELECT status, error_message FROM unified_merge_logs ORDER BY id")
    assert logs == [
        ("failed", f"rolled back with the merge: {sentence[:-1]}"),
        ("failed", sentence[:-1]),
    ]


def test_boundary_names_the_setting_for_any_command(deployed_db: str) -> None:
    """The last-resort translation (any command): a class-53 error is no lost connection."""
    with psycopg.connect(deployed_db) as conn, pytest.raises(psycopg.OperationalError) as raised:
        conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'temporary file size exceeds temp_file_limit (64kB)'"
            " USING ERRCODE = 'configuration_limit_exceeded'; END $$"
        )
    code, message = classify(raised.value)
    assert code == EXIT_FAILED
    assert message == (
        "The command ran out of temporary disk space (temp_file_limit = 64kB reached): raise "
        "temp_file_limit, or free disk space on the server, and run it again; its open "
        "transaction was rolled back."
    )


@pytest.mark.parametrize(
    ("sqlstate", "message", "hint", "expected"),
    [
        (
            "53400",
            "temporary file size exceeds temp_file_limit (1024kB)",
            None,
            'The merge ran out of temporary disk space in phase "review" (temp_file_limit = '
            "1024kB reached): raise temp_file_limit, or free disk space on the server, and run "
            "it again; nothing was changed.",
        ),
        (  # PostgreSQL 17 and later quote the setting's name
            "53400",
            'temporary file size exceeds "temp_file_limit" (0kB)',
            None,
            'The merge ran out of temporary disk space in phase "review" (temp_file_limit = '
            "0kB reached): raise temp_file_limit, or free disk space on the server, and run "
            "it again; nothing was changed.",
        ),
        (
            "53200",
            "out of shared memory",
            "You might need to increase max_pred_locks_per_transaction.",
            'The merge ran out of shared memory for locks in phase "review" (out of shared '
            "memory): raise max_pred_locks_per_transaction on the server (it takes a restart), "
            "and run it again; nothing was changed.",
        ),
        (  # PostgreSQL 17 and later quote the setting's name
            "53200",
            "out of shared memory",
            'You might need to increase "max_pred_locks_per_transaction".',
            'The merge ran out of shared memory for locks in phase "review" (out of shared '
            "memory): raise max_pred_locks_per_transaction on the server (it takes a restart), "
            "and run it again; nothing was changed.",
        ),
        (
            "53300",
            "sorry, too many clients already",
            None,
            'The merge ran out of connections in phase "review" (sorry, too many clients '
            "already): raise max_connections on the server, or lower SYNCPIPE_POOL_MAX_SIZE, and "
            "run it again; nothing was changed.",
        ),
        ("22023", "invalid parameter value", None, None),
        (None, "no SQLSTATE", None, None),
    ],
)
def test_resource_sentences(
    sqlstate: str | None, message: str, hint: str | None, expected: str | None
) -> None:
    """The sentence per SQLSTATE, with the setting the server's hint names when it names one."""
    error = resource_error(
        sqlstate, message, job="The merge", phase="review", outcome="nothing was changed", hint=hint
    )
    assert (str(error) if error else None) == expected
    if error is not None:
        assert error.exit_code == EXIT_FAILED


def test_batched_run_says_which_batches_stay(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """With SYNCPIPE_MERGE_BATCH_RECORDS the batches before the failing one are committed:
    the sentence says so instead of "nothing was changed"."""
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(
            """
            CREATE FUNCTION public.disk_full_at_81() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF (SELECT count(*) FROM public.new_unified_agents) >= 80 THEN
                    RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device'
                        USING ERRCODE = 'disk_full';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER disk_full_at_81 BEFORE INSERT ON public.new_unified_agents
                FOR EACH ROW EXECUTE FUNCTION public.disk_full_at_81();
            """
        )
    src = Sources()
    for i in range(100):
        src.agent(f"Given{i:03d} Family{i:03d}", emails=[f"p{i}@mail.com"], team=f"t{i % 7}")
    src.write(tmp_path / "data")
    invoke(["load", str(tmp_path / "data")], dsn=deployed_db)
    batches = {"SYNCPIPE_MERGE_BATCH_RECORDS": "40"}
    sentence = _error(invoke(["merge"], dsn=deployed_db, env=batches, code=EXIT_FAILED))
    _one_sentence(sentence)
    assert sentence.startswith('The merge ran out of disk space on the server in phase "agents"')
    assert sentence.endswith(
        "the 2 batch(es) committed before it stay and the rest was rolled back "
        "(SYNCPIPE_MERGE_BATCH_RECORDS)."
    )
    assert one(deployed_db, "SELECT count(*) FROM new_unified_agents") == 80
    statuses = fetch(deployed_db, "SELECT status FROM unified_merge_logs WHERE run_kind = 'merge'")
    assert sorted(statuses) == [("failed",), ("success",), ("success",)]


def test_statement_timeout_names_the_setting_in_any_language(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The same where the server speaks German: its words for the timeout are not known, so
    the setting is named as the likely cause (it was not named at all)."""
    require_language(deployed_db, "de_DE.UTF-8")
    database = one(deployed_db, "SELECT current_database()")
    fetch(deployed_db, f"ALTER DATABASE {database} SET lc_messages = 'de_DE.UTF-8'")
    invoke(["load", str(_more_data(tmp_path / "more", persons=1000))], dsn=deployed_db)
    failed = invoke(
        ["merge"], dsn=deployed_db, env={"SYNCPIPE_STATEMENT_TIMEOUT": "0.05"}, code=EXIT_FAILED
    )
    message = _error(failed)
    _one_sentence(message)
    assert "if it was the statement timeout, raise SYNCPIPE_STATEMENT_TIMEOUT (now 0.05 s" in (
        message
    )


def test_statement_timeout_names_the_phase_and_the_setting(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A merge canceled by SYNCPIPE_STATEMENT_TIMEOUT says where and what to raise, exit 1,
    and leaves everything as it was."""
    invoke(["load", str(_more_data(tmp_path / "more", persons=1000))], dsn=deployed_db)
    before = _state(deployed_db)
    failed = invoke(
        ["merge"], dsn=deployed_db, env={"SYNCPIPE_STATEMENT_TIMEOUT": "0.05"}, code=EXIT_FAILED
    )
    message = _error(failed)
    _one_sentence(message)
    match = re.fullmatch(
        r'The merge was canceled in phase "(\w+)" \(canceling statement due to statement '
        r"timeout\): raise SYNCPIPE_STATEMENT_TIMEOUT \(now 0\.05 s; 0 for none\) and run it "
        r"again; nothing was changed\.",
        message,
    )
    assert match and match.group(1) in PHASES, message
    assert _state(deployed_db) == before
    assert one(deployed_db, "SELECT status FROM unified_merge_logs ORDER BY id DESC LIMIT 1") == (
        "failed"
    )
    invoke(["merge"], dsn=deployed_db)  # no timeout: it runs
