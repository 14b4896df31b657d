"""The merge's contact keys (merge_agent_contacts) stay the active agents' e-mails and phones:
after agents edited by hand, and when a hand edit and a merge change one agent at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.agents import Sources, agent_of, assert_contact_keys_in_step
from tests.helpers import Invoke, fetch, one, require_language


def load_and_merge(invoke: Invoke, dsn: str, src: Sources, folder: Path) -> dict:
    src.write(folder)
    invoke(["load", str(folder)], dsn=dsn)
    return invoke(["merge", "--json"], dsn=dsn).json()


def merge_process(dsn: str, **env: str) -> subprocess.Popen[str]:
    """``syncpipe merge --json`` in a process of its own (it runs while the test edits)."""
    return subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "merge", "--json"],
        env={**os.environ, "SYNCPIPE_DATABASE_URL": dsn, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting_on_a_lock(dsn: str, application: str) -> bool:
    return bool(
        fetch(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND application_name = %s",
            (application,),
        )
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_contact_keys_follow_an_agent_edited_by_hand(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An agent given another e-mail through the API, or retired and brought back, keeps
    contact keys that are its contacts (trigger): a new record with the new e-mail joins it,
    and one with the e-mail it no longer has does not."""
    src = Sources()
    sam = src.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"])
    kim = src.agent("Kim Boyd", team="team-2", emails=["kim.boyd@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    sam_agent, kim_agent = (agent_of(deployed_db, "new_agents", key) for key in (sam, kim))
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        conn.execute(
            "UPDATE new_unified_agents SET emails = %s WHERE agent_id = %s",
            (["s.ortiz@newmail.com"], sam_agent),
        )
        conn.commit()
        assert_contact_keys_in_step(deployed_db)
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = %s WHERE agent_id = %s",
            (kim_agent, sam_agent),
        )
        conn.commit()
        assert_contact_keys_in_step(deployed_db)
        conn.execute(
            "UPDATE new_unified_agents SET merged_into = NULL WHERE agent_id = %s", (sam_agent,)
        )
        conn.commit()
    assert_contact_keys_in_step(deployed_db)
    assert fetch(
        deployed_db, "SELECT value FROM merge_agent_contacts WHERE agent_id = %s", (sam_agent,)
    ) == [("s.ortiz@newmail.com",)]

    again = Sources(_serial=100)
    new_mail = again.agent("Sam Ortiz", team="team-7", emails=["s.ortiz@newmail.com"])
    old_mail = again.agent("Sam Ortiz", team="team-8", emails=["sam.ortiz@mail.com"])
    load_and_merge(invoke, deployed_db, again, tmp_path / "d2")
    assert agent_of(deployed_db, "new_agents", new_mail) == sam_agent
    assert agent_of(deployed_db, "new_agents", old_mail) != sam_agent
    assert_contact_keys_in_step(deployed_db)


def test_contact_keys_follow_an_agent_inserted_or_renumbered_by_hand(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An agent inserted by hand has its contacts as keys, and a new record with its e-mail
    joins it; an agent given a new id takes its keys along; a NULL in the e-mails is no key."""
    src = Sources()
    kim = src.agent("Kim Boyd", team="team-2", emails=["kim.boyd@mail.com"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    kim_agent = agent_of(deployed_db, "new_agents", kim)
    with psycopg.connect(deployed_db) as conn:
        conn.execute("SET ROLE service_role")
        row = conn.execute(
            "INSERT INTO new_unified_agents (full_name, emails, phone_numbers) "
            "VALUES ('Lee Hart', %s, %s) RETURNING agent_id",
            (["lee.hart@mail.com", None], ["5550101234"]),
        ).fetchone()
        assert row is not None
        lee_agent = int(row[0])
        conn.commit()
        assert_contact_keys_in_step(deployed_db)
        assert (
            one(
                deployed_db,
                "SELECT count(*) FROM merge_agent_contacts WHERE agent_id = %s",
                (lee_agent,),
            )
            == 2
        )
        moved = conn.execute(
            "UPDATE new_unified_agents SET agent_id = DEFAULT WHERE agent_id = %s "
            "RETURNING agent_id",
            (lee_agent,),
        ).fetchone()
        assert moved is not None
        lee_agent = int(moved[0])
        conn.commit()
        assert_contact_keys_in_step(deployed_db)
        # deleted and inserted again by one statement (the row trigger of the INSERT fires
        # before the statement trigger of the DELETE)
        conn.execute(
            "WITH gone AS (DELETE FROM new_unified_agents WHERE agent_id = %s RETURNING *) "
            "INSERT INTO new_unified_agents (agent_id, full_name, emails) OVERRIDING SYSTEM VALUE "
            "SELECT agent_id, full_name, emails || '{l.hart@mail.com}' FROM gone",
            (lee_agent,),
        )
        conn.commit()
    assert_contact_keys_in_step(deployed_db)
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM merge_agent_contacts WHERE agent_id = %s",
            (lee_agent,),
        )
        == 2
    )

    again = Sources(_serial=100)
    lee = again.agent("Lee Hart", team="team-7", emails=["lee.hart@mail.com"])
    load_and_merge(invoke, deployed_db, again, tmp_path / "d2")
    assert agent_of(deployed_db, "new_agents", lee) == lee_agent
    assert agent_of(deployed_db, "new_agents", kim) == kim_agent
    assert_contact_keys_in_step(deployed_db)


def _sam_and_a_change(
    invoke: Invoke, dsn: str, tmp_path: Path, change: str
) -> tuple[int, str | None]:
    """Sam Ortiz merged, then a load the next merge takes up: a new record that joins Sam (the
    merge updates Sam's agent), or Sam's own record edited in a way that changes no field of
    the agent (the merge matches it again and leaves the agent as it is). Returns Sam's agent
    and the new record's key."""
    src = Sources()
    src.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"])
    src.agent("Kim Boyd", team="team-2", emails=["kim.boyd@mail.com"])
    load_and_merge(invoke, dsn, src, tmp_path / "d1")
    sam_agent = agent_of(dsn, "new_agents", src.agents[0]["supabase_uuid"])
    joined = None
    if change == "joins":
        src.agents = src.agents[:2]
        joined = src.agent(
            "Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"], phones=["5550109999"]
        )
    else:
        src.agents[0]["social_links"] = '{"web": "https://x.example.com/sam"}'
    src.write(tmp_path / "d2")
    invoke(["load", str(tmp_path / "d2")], dsn=dsn)
    return sam_agent, joined


HAND_EDIT = (
    "UPDATE new_unified_agents SET emails = emails || 'sam.o@work.com'::text, "
    "phone_numbers = '{5550100000}' WHERE agent_id = %s"
)


@pytest.mark.parametrize("change", ["joins", "unchanged"])
def test_a_merge_waits_for_a_hand_edit_of_its_agent_and_keeps_the_keys_in_step(
    invoke: Invoke, deployed_db: str, tmp_path: Path, change: str
) -> None:
    """An agent edited by hand in a transaction still open while a merge runs: the merge waits
    for it where it writes that agent, and both commit; the keys are the agent's contacts
    after both."""
    sam_agent, joined = _sam_and_a_change(invoke, deployed_db, tmp_path, change)
    with psycopg.connect(deployed_db) as editor:
        editor.execute("SET ROLE service_role")
        editor.execute(HAND_EDIT, (sam_agent,))
        merge = merge_process(deployed_db, SYNCPIPE_APPLICATION_NAME="merge-under-test")
        wait_for(
            lambda: merge.poll() is not None or waiting_on_a_lock(deployed_db, "merge-under-test"),
            "the merge to wait for the edit or to finish",
        )
        editor.commit()
    out, err = merge.communicate(timeout=300)
    assert merge.returncode == 0, out + err
    assert_contact_keys_in_step(deployed_db)
    if joined is not None:
        assert agent_of(deployed_db, "new_agents", joined) == sam_agent


@pytest.mark.parametrize("change", ["joins", "unchanged"])
def test_a_hand_edit_during_a_merge_waits_for_it_and_keeps_the_keys_in_step(
    invoke: Invoke, deployed_db: str, tmp_path: Path, change: str
) -> None:
    """An agent edited by hand while a merge that wrote it is still open (held at a step of
    SYNCPIPE_PIPELINE_STEPS): the edit waits for the merge, both commit, and the keys are the
    edit's contacts."""
    sam_agent, _ = _sam_and_a_change(invoke, deployed_db, tmp_path, change)
    with psycopg.connect(deployed_db, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION public.hold_merge() RETURNS void LANGUAGE sql "
            "AS 'SELECT pg_advisory_xact_lock(4242)'"
        )
    with psycopg.connect(deployed_db) as gate:
        gate.execute("SELECT pg_advisory_xact_lock(4242)")
        merge = merge_process(
            deployed_db,
            SYNCPIPE_APPLICATION_NAME="merge-under-test",
            SYNCPIPE_PIPELINE_STEPS='["public.hold_merge"]',
        )
        wait_for(lambda: waiting_on_a_lock(deployed_db, "merge-under-test"), "the merge's step")
        edit_done: list[BaseException | None] = []

        def edit() -> None:
            try:
                with psycopg.connect(deployed_db, application_name="edit-under-test") as editor:
                    editor.execute("SET ROLE service_role")
                    editor.execute(HAND_EDIT, (sam_agent,))
                edit_done.append(None)
            except BaseException as exc:  # (reported by the assertion below)
                edit_done.append(exc)

        editor_thread = threading.Thread(target=edit)
        editor_thread.start()
        if change == "joins":  # the merge wrote Sam's agent: the edit waits for it
            wait_for(lambda: waiting_on_a_lock(deployed_db, "edit-under-test"), "the edit")
        gate.commit()
        out, err = merge.communicate(timeout=300)
        editor_thread.join(60)
    assert merge.returncode == 0, out + err
    assert edit_done == [None]
    assert_contact_keys_in_step(deployed_db)
    emails, phones = fetch(
        deployed_db,
        "SELECT emails, phone_numbers FROM new_unified_agents WHERE agent_id = %s",
        (sam_agent,),
    )[0]
    assert emails == ["sam.ortiz@mail.com", "sam.o@work.com"] and phones == ["5550100000"]


@pytest.mark.parametrize("language", ["C", "de_DE.UTF-8"])
def test_a_merge_gives_up_on_an_agent_edit_left_open_after_the_lock_timeout(
    invoke: Invoke, deployed_db: str, tmp_path: Path, language: str
) -> None:
    """A hand edit of an agent the merge must write, left open: the merge gives up after
    SYNCPIPE_LOCK_TIMEOUT with one sentence naming it, exit 3, and writes nothing; once the
    edit is committed the next merge takes the record up. The same on a server speaking
    German (the table and the session were found in its English words only)."""
    require_language(deployed_db, language)
    database = one(deployed_db, "SELECT current_database()")
    fetch(deployed_db, f"ALTER DATABASE {database} SET lc_messages = '{language}'")
    sam_agent, joined = _sam_and_a_change(invoke, deployed_db, tmp_path, "joins")
    assert joined is not None
    with psycopg.connect(deployed_db) as editor:
        editor_pid = editor.info.backend_pid
        editor.execute(HAND_EDIT, (sam_agent,))
        merge = merge_process(deployed_db, SYNCPIPE_LOCK_TIMEOUT="1")
        out, err = merge.communicate(timeout=300)
        editor.commit()
    assert merge.returncode == 3, out + err
    assert "SYNCPIPE_LOCK_TIMEOUT" in err and "nothing was changed" in err, err
    # (it names the table and the session holding the row)
    assert "a row of new_unified_agents" in err and f"server pid {editor_pid}," in err, err
    assert not fetch(
        deployed_db, "SELECT 1 FROM unified_agent_sources WHERE source_id = %s", (joined,)
    )
    # (a limit beyond PostgreSQL's largest lock_timeout is its largest)
    invoke(["merge"], dsn=deployed_db, env={"SYNCPIPE_LOCK_TIMEOUT": "inf"})
    assert agent_of(deployed_db, "new_agents", joined) == sam_agent
    assert_contact_keys_in_step(deployed_db)


def test_a_merge_in_a_deadlock_with_a_hand_edit_says_so_and_changes_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A merge waiting for an agent a session edits, while that session waits for a team page
    the merge has marked synced: PostgreSQL breaks the deadlock by rolling the merge back. One
    sentence says so (exit 3, like any lock not had), nothing is changed, and the next merge
    takes everything up (it was a raw "deadlock detected" exit 1)."""
    sam_agent, joined = _sam_and_a_change(invoke, deployed_db, tmp_path, "joins")
    assert joined is not None
    pages = Sources(_serial=500)
    page = pages.page("team-3", [{"name": "Ann Lowe", "email": "ann.lowe@mail.com"}])
    pages.write(tmp_path / "d3")
    invoke(["load", str(tmp_path / "d3")], dsn=deployed_db)
    with psycopg.connect(deployed_db) as editor:
        # (the merge, waiting first, finds the deadlock: it checks after 1 s, the editor later)
        editor.execute("SET deadlock_timeout = '60s'")
        editor.execute(HAND_EDIT, (sam_agent,))
        merge = merge_process(deployed_db, SYNCPIPE_APPLICATION_NAME="merge-under-test")
        wait_for(
            lambda: merge.poll() is not None or waiting_on_a_lock(deployed_db, "merge-under-test"),
            "the merge to wait for the edit",
        )
        editor.execute(
            "UPDATE bronze.company_info_raw SET website = website WHERE research_uuid = %s",
            (page,),
        )
        out, err = merge.communicate(timeout=300)
        editor.commit()
    assert merge.returncode == 3, out + err
    assert "rolled back" in err and "another session" in err and "nothing was changed" in err
    assert "Traceback" not in err
    assert not fetch(
        deployed_db, "SELECT 1 FROM unified_agent_sources WHERE source_id = %s", (joined,)
    )
    invoke(["merge"], dsn=deployed_db)
    assert agent_of(deployed_db, "new_agents", joined) == sam_agent
    assert fetch(
        deployed_db, "SELECT 1 FROM unified_company_member WHERE research_uuid = %s", (page,)
    )
    assert_contact_keys_in_step(deployed_db)


def _merge_held_while_deleting(dsn: str, held_agent: int, deleted: str) -> None:
    """A merge held by a hand edit of ``held_agent`` (in its golden_records phase), and the
    feed record ``deleted`` deleted meanwhile; the merge then goes through."""
    with psycopg.connect(dsn) as editor:
        editor.execute(HAND_EDIT, (held_agent,))
        merge = merge_process(dsn, SYNCPIPE_APPLICATION_NAME="merge-under-test")
        wait_for(
            lambda: merge.poll() is not None or waiting_on_a_lock(dsn, "merge-under-test"),
            "the merge to wait for the edit",
        )
        with psycopg.connect(dsn, autocommit=True) as deleter:
            deleter.execute("DELETE FROM new_agents WHERE supabase_uuid = %s", (deleted,))
        editor.commit()
    out, err = merge.communicate(timeout=300)
    assert merge.returncode == 0, out + err


def test_a_source_record_deleted_while_a_merge_refreshes_is_refreshed_by_the_next(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """One of Yan's two records deleted while a merge is in its golden_records phase (held
    there by a hand edit of another agent it refreshes): the deletion's mark for a refresh of
    Yan outlives that merge, and the next one refreshes Yan (the merge took every mark off at
    its end, read or not: Yan kept the deleted record's phone for good)."""
    src = Sources()
    src.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"])
    src.agent("Yan Holt", team="team-2", emails=["yan.holt@mail.com"], phones=["3055550001"])
    gone = src.agent("Yan Holt", team="team-2", emails=["yan.holt@mail.com"], phones=["3055550002"])
    load_and_merge(invoke, deployed_db, src, tmp_path / "d1")
    sam_agent = agent_of(deployed_db, "new_agents", src.agents[0]["supabase_uuid"])
    yan_agent = agent_of(deployed_db, "new_agents", gone)
    more = Sources(_serial=100)
    more.agent("Sam Ortiz", team="team-1", emails=["sam.ortiz@mail.com"], phones=["5550109999"])
    more.write(tmp_path / "d2")
    invoke(["load", str(tmp_path / "d2")], dsn=deployed_db)
    _merge_held_while_deleting(deployed_db, sam_agent, gone)
    invoke(["merge"], dsn=deployed_db)
    phones, count = fetch(
        deployed_db,
        "SELECT phone_numbers, source_count FROM new_unified_agents WHERE agent_id = %s",
        (yan_agent,),
    )[0]
    assert (phones, count) == (["+13055550001"], 1)
    assert_contact_keys_in_step(deployed_db)


def test_a_source_record_deleted_after_a_merge_read_it_loses_its_lineage_in_the_next(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A record deleted while the merge that matched it is still open (held by a hand edit of
    its agent, after it wrote the record's lineage): the delete's trigger found no lineage to
    forget, so the next merge forgets it, and the agent's golden record loses the record's
    phone (the lineage of the deleted row stayed for good, and its phone with the agent)."""
    sam_agent, joined = _sam_and_a_change(invoke, deployed_db, tmp_path, "joins")
    assert joined is not None
    _merge_held_while_deleting(deployed_db, sam_agent, joined)
    invoke(["merge"], dsn=deployed_db)
    assert not fetch(
        deployed_db, "SELECT 1 FROM unified_agent_sources WHERE source_id = %s", (joined,)
    )
    phones, count = fetch(
        deployed_db,
        "SELECT phone_numbers, source_count FROM new_unified_agents WHERE agent_id = %s",
        (sam_agent,),
    )[0]
    assert (phones, count) == ([], 1)  # Sam's own record has no phone
    assert_contact_keys_in_step(deployed_db)
    # and the requests are gone after the runs that followed
    invoke(["merge"], dsn=deployed_db)
    assert not fetch(deployed_db, "SELECT 1 FROM syncpipe_internal.merge_requeue")


def test_the_merge_lock_timeout_does_not_bound_a_pipeline_step(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A step of SYNCPIPE_PIPELINE_STEPS that waits for another session longer than
    SYNCPIPE_LOCK_TIMEOUT still runs: the limit is the merge batch's, put back after it."""
    _sam_and_a_change(invoke, deployed_db, tmp_path, "joins")
    with psycopg.connect(deployed_db, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION public.wait_a_little() RETURNS void LANGUAGE sql "
            "AS 'SELECT pg_advisory_xact_lock(4343)'"
        )
    with psycopg.connect(deployed_db) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(4343)")
        merge = merge_process(
            deployed_db,
            SYNCPIPE_APPLICATION_NAME="merge-under-test",
            SYNCPIPE_LOCK_TIMEOUT="0.5",
            SYNCPIPE_PIPELINE_STEPS='["public.wait_a_little"]',
        )
        wait_for(lambda: waiting_on_a_lock(deployed_db, "merge-under-test"), "the step")
        time.sleep(1.5)
        holder.commit()
    out, err = merge.communicate(timeout=300)
    assert merge.returncode == 0, out + err
