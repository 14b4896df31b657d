"""syncpipe load on a real PostgreSQL: speed paths, every kind of bad row, idempotency."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.helpers import Invoke, fetch, one, require_language

HEADER = "supabase_uuid,full_name,email_clean,phone_digits,team_id,social_links"


def agent_line(i: int, *, name: str | None = None) -> str:
    """A good new_agents CSV line, deterministic in ``i``."""
    key = uuid.UUID(int=i + 1, version=4)
    name = name or f"Agent Number{i}"
    emails = json.dumps([f"agent{i}@example.com"]).replace('"', '""')
    phones = json.dumps([f"555{i:07d}"]).replace('"', '""')
    links = json.dumps({"site": f"https://example.com/{i}"}).replace('"', '""')
    return f'{key},{name},"{emails}","{phones}",team-{i % 50},"{links}"'


def write(
    path: Path, lines: list[str] | list[bytes], *, newline: bytes = b"\n", bom: bool = False
) -> Path:
    data = newline.join(x if isinstance(x, bytes) else x.encode() for x in lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


@contextmanager
def _role(
    dsn: str, kind: str, schemas: tuple[str, ...], *setup: str, bypassrls: bool = True
) -> Iterator[tuple[str, str]]:
    """A login role past row level security (as service_role is; ``bypassrls=False``: held
    to it) with every right on the tables and sequences of ``schemas``, then the ``setup``
    statements ({role}: its name); its name and DSN; dropped after."""
    role = f"syncpipe_{kind}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN {'BYPASSRLS' if bypassrls else 'NOBYPASSRLS'}")
        admin.execute(f"GRANT USAGE ON SCHEMA {', '.join(schemas)} TO {role}")
        for schema in schemas:
            admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}")
            admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}")
        for statement in setup:
            admin.execute(statement.format(role=role))
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
        params["user"] = role
        yield role, psycopg.conninfo.make_conninfo(**params)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def reject_rows() -> list[dict[str, str]]:
    files = sorted(Path("logs/rejects").glob("*.rejects.csv"), key=lambda p: p.stat().st_mtime)
    assert files, "no reject file written"
    with files[-1].open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_clean_file_loads_every_row(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """A clean file (BOM, CRLF) loads completely, fast path, and the ledger records it."""
    path = write(
        tmp_path / "new_agents.csv",
        [HEADER] + [agent_line(i) for i in range(3000)],
        newline=b"\r\n",
        bom=True,
    )
    data = invoke(["load", str(path), "--json"], dsn=deployed_db).json()
    f = data["files"][0]
    assert (f["status"], f["rows_read"], f["inserted"], f["rejected"]) == ("loaded", 3000, 3000, 0)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 3000
    row = fetch(
        deployed_db,
        "SELECT file_name, rows_read, inserted, rejected, sha256 FROM syncpipe.load_files",
    )
    assert row[0][:4] == ("new_agents.csv", 3000, 3000, 0)
    assert len(row[0][4]) == 64
    assert one(
        deployed_db,
        "SELECT email_clean FROM public.new_agents WHERE full_name = %s",
        ("Agent Number7",),
    ) == ["agent7@example.com"]


def test_reload_same_file_is_skipped_and_force_changes_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Same checksum: skipped; --force: every row unchanged, updated_at untouched."""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(500)])
    invoke(["load", str(path)], dsn=deployed_db)
    before = fetch(
        deployed_db, "SELECT supabase_uuid, updated_at FROM public.new_agents ORDER BY 1"
    )
    again = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert again["status"] == "skipped"
    assert "already loaded" in again["message"]
    forced = invoke(["load", str(path), "--force", "--json"], dsn=deployed_db).json()["files"][0]
    assert (forced["inserted"], forced["updated"], forced["unchanged"]) == (0, 0, 500)
    after = fetch(deployed_db, "SELECT supabase_uuid, updated_at FROM public.new_agents ORDER BY 1")
    assert before == after


def test_changed_rows_update_and_new_rows_insert(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A changed version of the same file: changed rows are updated, new ones inserted, the
    rest untouched (a different file repeating its keys is refused: test_load_keys)."""
    write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(400)])
    invoke(["load", str(tmp_path / "new_agents.csv")], dsn=deployed_db)
    lines = [agent_line(i) for i in range(400)]
    lines[10] = agent_line(10, name="Renamed Agent")
    lines += [agent_line(i) for i in range(400, 450)]
    write(tmp_path / "new_agents.csv", [HEADER, *lines])
    f = invoke(["load", str(tmp_path / "new_agents.csv"), "--json"], dsn=deployed_db).json()[
        "files"
    ][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (50, 1, 399, 0)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 450
    assert one(
        deployed_db,
        # a newer updated_at is what makes the next merge take the row up again
        "SELECT updated_at > created_at FROM public.new_agents WHERE full_name = 'Renamed Agent'",
    )


def _rows_scanned(dsn: str, table: str) -> int:
    """Rows read from ``table`` by whole-table scans so far (the server's statistics, once the
    sessions that read them have ended and reported)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = %s::regclass", (table,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_file_loaded_again_locks_and_reads_only_what_it_changes(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A changed version of a loaded file neither locks nor writes the rows it leaves as they
    are: a row another transaction holds (a merge marking pages synced, a person's open edit)
    does not stop it, and no row carries the load's lock afterwards. Each batch finds its rows
    by the key's index: before, every batch read the whole table three times (3 million rows
    loaded again took 7 minutes, 48 s the first time)."""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(3000)])
    invoke(["load", str(path)], dsn=deployed_db)
    lines = [agent_line(i) for i in range(3000)]
    lines[2500] = agent_line(2500, name="Renamed Agent")
    write(path, [HEADER, *lines])
    held = str(uuid.UUID(int=11, version=4))  # agent 10's row, the same in both versions
    time.sleep(0.5)  # (the first load's sessions report their statistics as they end)
    scanned = _rows_scanned(deployed_db, "public.new_agents")
    with psycopg.connect(deployed_db) as other:
        other.execute(
            "SELECT 1 FROM public.new_agents WHERE supabase_uuid = %s FOR UPDATE", (held,)
        )
        env = {"SYNCPIPE_LOAD_BATCH_ROWS": "500", "SYNCPIPE_LOCK_TIMEOUT": "2"}
        f = invoke(["load", str(path), "--json"], dsn=deployed_db, env=env).json()["files"][0]
    assert (f["status"], f["inserted"], f["updated"], f["unchanged"]) == ("loaded", 0, 1, 2999)
    time.sleep(0.5)
    assert _rows_scanned(deployed_db, "public.new_agents") - scanned < 3000
    # (the row held keeps the other transaction's lock; the renamed row is a new version)
    locked = fetch(deployed_db, "SELECT full_name FROM public.new_agents WHERE xmax <> '0'")
    assert set(locked) <= {("Agent Number10",), ("Renamed Agent",)}


def test_a_row_held_by_an_open_edit_names_the_session(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A row the file changes, held by another session's open transaction: the load gives up
    after the lock timeout naming that session (its server pid, user and application) and the
    setting, exit 3 (it guessed "a merge?")."""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(20)])
    invoke(["load", str(path)], dsn=deployed_db)
    write(path, [HEADER] + [agent_line(i, name="Renamed") for i in range(20)])
    with psycopg.connect(deployed_db, application_name="someone's psql") as other:
        pid = other.info.backend_pid
        other.execute("SELECT 1 FROM public.new_agents FOR UPDATE")
        res = invoke(
            ["load", str(path), "--json"],
            code=3,
            dsn=deployed_db,
            env={"SYNCPIPE_LOCK_TIMEOUT": "1"},
        )
    (failed,) = res.json()["files"]
    assert f"server pid {pid}" in failed["message"], failed["message"]
    assert "application someone's psql" in failed["message"]
    assert "SYNCPIPE_LOCK_TIMEOUT" in failed["message"]
    assert any(e.get("event") == "load.rows_locked" for e in res.log_events())


def test_a_key_another_open_transaction_is_inserting_ends_the_wait(
    deployed_db: str, tmp_path: Path
) -> None:
    """Another session inserted a key of the file and left its transaction open: the load
    waits up to the lock timeout, then fails the file naming that session, exit 3. (It waited
    inside the database with no limit: an idle session hung it for good.)"""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(20)])
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db, "SYNCPIPE_LOCK_TIMEOUT": "1"}
    with psycopg.connect(deployed_db, application_name="an idle insert") as other:
        pid = other.info.backend_pid
        other.execute(
            "INSERT INTO public.new_agents (supabase_uuid, full_name) VALUES (%s, 'Someone')",
            (str(uuid.UUID(int=6, version=4)),),
        )
        done = subprocess.run(
            [sys.executable, "-m", "syncpipe", "load", str(path), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3, done.stdout + done.stderr
    (failed,) = json.loads(done.stdout)["files"]
    assert f"server pid {pid}" in failed["message"], failed["message"]


def test_a_table_with_types_that_have_no_equality_loads_again(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Columns of types with no ``=`` (json, point; json[], whose ``=`` fails only when
    two values meet) are compared on their text when a file is loaded again, and so are
    geometric ones (``=`` of two boxes compares their areas): the same file changes nothing,
    a changed value is an update. (The server refused every batch: "operator does not exist:
    json = json"; a box moved but as large was "unchanged" and never written.)"""
    fetch(
        deployed_db,
        "CREATE TABLE public.shapes (id int PRIMARY KEY, doc json, spot point, docs json[], "
        "area box, n int)",
    )
    path = tmp_path / "shapes.csv"
    header = "id,doc,spot,docs,area,n"
    rows = ['1,"{""a"": 1}","(1,2)","{""[1]""}","(1,1),(0,0)",5', '2,"[1, 2]","(3,4)",,,6']
    write(path, [header, *rows])
    invoke(["load", str(path), "-t", "public.shapes"], dsn=deployed_db)
    load = ["load", str(path), "-t", "public.shapes", "--json"]
    f = invoke([*load, "--force"], dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"]) == (0, 0, 2)
    rows = ['1,"{""a"": 1}","(1,2)","{""[1]""}","(3,3),(2,2)",5', '2,"[1, 2]","(3,5)",,,6']
    write(path, [header, *rows])
    f = invoke(load, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"]) == (0, 2, 0)
    rows = ['1,"{""a"":  1}","(1,2)","{""[2]""}","(3,3),(2,2)",5', '2,"[1, 2]","(3,5)",,,6']
    write(path, [header, *rows])
    f = invoke(load, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"]) == (0, 1, 1)
    assert fetch(
        deployed_db,
        "SELECT doc::text, spot::text, docs::text, area::text FROM public.shapes ORDER BY id",
    ) == [
        ('{"a":  1}', "(1,2)", "{[2]}", "(3,3),(2,2)"),
        ("[1, 2]", "(3,5)", None, None),
    ]


def test_a_partitioned_table_loads_again(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """A changed file loads again into a partitioned table, counted as into any other, and a
    key repeated in a later batch of it is still told from a row of an earlier one. (Every
    changed row was a reject, "cannot retrieve a system column in this context": a write into
    a partitioned table cannot return its rows' transaction ids.)"""
    fetch(
        deployed_db,
        "CREATE TABLE public.parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id); "
        "CREATE TABLE public.parted_low PARTITION OF public.parted FOR VALUES FROM (0) TO (100);"
        "CREATE TABLE public.parted_high PARTITION OF public.parted "
        "FOR VALUES FROM (100) TO (1000)",
    )
    path = tmp_path / "parted.csv"
    load = ["load", str(path), "-t", "public.parted", "--json"]
    write(path, ["id,v", "1,a", "150,b", "2,c"])
    invoke(load, dsn=deployed_db)
    write(path, ["id,v", "1,A", "150,b", "2,c", "250,d"])
    f = invoke(load, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (1, 1, 2, 0)
    f = invoke([*load, "--force"], dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (0, 0, 4, 0)
    # (batches of two rows: line 6 repeats the key the first batch wrote at line 2)
    write(path, ["id,v", "1,x", "150,y", "2,z", "250,w", "1,again"])
    result = invoke(load, dsn=deployed_db, env={"SYNCPIPE_LOAD_BATCH_ROWS": "2"}, code=1)
    f = result.json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (0, 4, 0, 1)
    rejects = Path(f["reject_file"]).read_text()
    assert "duplicate key 1 in this file (first at line 2)" in rejects
    assert fetch(deployed_db, "SELECT id, v FROM public.parted ORDER BY id") == [
        (1, "x"),
        (2, "z"),
        (150, "y"),
        (250, "w"),
    ]


def test_a_key_repeated_in_a_later_batch_keeps_its_first_row_with_several_streams(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A file loaded again by several streams: each batch that must be judged against the
    ones before it waits until they are all done, so the first row of a repeated key stays and
    the counts are those of one stream. (A batch a stream had taken but not begun did not count
    as earlier: a later batch ran first, wrote the key's later row and rejected the first as
    the repeat, in about 4 runs of 6.)"""
    fetch(deployed_db, "CREATE TABLE public.days (at timestamptz PRIMARY KEY, v text)")
    path = tmp_path / "days.csv"
    load = ["load", str(path), "-t", "public.days", "--json"]
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2", "SYNCPIPE_LOAD_STREAMS": "2", "TZ": "UTC"}
    first = ["at,v", "2024-01-01,a", "2024-01-02,b", "2024-01-03,c", "2024-01-04,d"]
    changed = ["at,v", "2024-01-02,b", "2024-01-03,c", "2024-01-01,a", "2024-01-04,dd"]
    changed += ["2024-01-05,e", "2024-01-01,LATER"]
    for _ in range(6):
        fetch(deployed_db, "TRUNCATE public.days; DELETE FROM syncpipe.load_files")
        write(path, first)
        invoke(load, dsn=deployed_db, env=env)
        write(path, changed)
        f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
        assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (1, 1, 3, 1)
        (reject,) = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
        assert (reject["line"], reject["raw"]) == ("7", "2024-01-01,LATER")
        assert fetch(deployed_db, "SELECT v FROM public.days ORDER BY at") == [
            ("a",),
            ("b",),
            ("c",),
            ("dd",),
            ("e",),
        ]


def test_a_key_spelled_otherwise_in_a_later_batch_is_still_a_repeat(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A file loaded again whose key comes back in a later batch spelled another way ("3.50"
    for 3.5) keeps its first row: the keys a batch leaves unchanged are remembered as the table
    spells them. (They were remembered as the file spelled them: "3.50" was a new key, and its
    row overwrote the first.)"""
    fetch(deployed_db, "CREATE TABLE public.sizes (n numeric PRIMARY KEY, v text)")
    path = tmp_path / "sizes.csv"
    load = ["load", str(path), "-t", "public.sizes", "--json"]
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2", "SYNCPIPE_LOAD_STREAMS": "1"}
    write(path, ["n,v", "1,a", "2,b", "3.5,c", "4,d"])
    invoke(load, dsn=deployed_db, env=env)
    for first, later in (("3.5", "3.50"), ("3.500", "3.5")):
        write(path, ["n,v", "1,a", "2,b", f"{first},c", "4,d", f"{later},x"])
        f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
        assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (0, 0, 4, 1)
        (reject,) = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
        assert (reject["line"], reject["raw"]) == ("6", f"{later},x")
        assert one(deployed_db, "SELECT v FROM public.sizes WHERE n = 3.5") == "c"


@pytest.mark.parametrize(
    ("kind", "first", "later"),
    [
        ("numeric", "3.5", "3.50"),
        ("numeric(10,2)", "3.555", "3.56"),
        ("int", "3", "03"),
        ("timestamptz", "2024-01-03 00:00:00+00", "2024-01-03"),
        ("citext", "Abc", "abc"),
        ("varbit", "0101", "X5"),
    ],
)
def test_a_key_spelled_otherwise_in_a_batch_that_commits_first_is_the_repeat(
    invoke: Invoke, deployed_db: str, tmp_path: Path, kind: str, first: str, later: str
) -> None:
    """With two streams, the later batch of a file may commit first. Where it holds a key of an
    earlier row spelled another way ("3.50" after "3.5", "03" after "3"), that row is still the
    repeat: the earlier row is kept, as the file spells its key, and the later one rejected
    naming the first's line; so is a third row of the key, in a batch after both. (The later
    row was looked for in its batch by its text, was not found, and the first row was dropped
    in its place; once found, the later row's spelling of the key stayed, and with the same
    values the row kept the later batch's transaction id: the third row's reason said "first
    earlier in the file".)"""
    if kind == "citext":
        try:
            fetch(deployed_db, "CREATE EXTENSION IF NOT EXISTS citext")
        except psycopg.Error:
            pytest.skip("this server has no citext")
    fetch(
        deployed_db,
        f"""
        CREATE TABLE public.spelled (k {kind} PRIMARY KEY, v text);
        CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.v = 'slow' THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON public.spelled
            FOR EACH ROW EXECUTE FUNCTION public.slow();
        """,
    )
    others = {
        "numeric": "145",
        "numeric(10,2)": "145",
        "int": "145",
        "citext": ("a1", "d4", "e5"),
        "varbit": ("0001", "11", "111"),
    }
    a, d, e = others.get(kind, ("2024-01-01", "2024-01-04", "2024-01-05"))
    path = tmp_path / "spelled.csv"
    lines = [f"{a},slow", f"{first},c", f'"{later}",c', f"{d},d", f"{e},e", f"{first},y"]
    write(path, ["k,v", *lines])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2", "SYNCPIPE_LOAD_STREAMS": "2", "TZ": "UTC"}
    load = ["load", str(path), "-t", "public.spelled", "--json"]
    f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (4, 2)
    rejects = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [(r["line"], r["raw"]) for r in rejects] == [("4", lines[2]), ("7", lines[5])]
    assert all("(first at line 3)" in r["reason"] for r in rejects), rejects
    assert fetch(deployed_db, "SELECT v FROM public.spelled ORDER BY k") == [
        ("slow",),
        ("c",),
        ("d",),
        ("e",),
    ]
    assert one(deployed_db, "SELECT k::text FROM public.spelled WHERE v = 'c'") == one(
        deployed_db, f"SELECT '{first}'::{kind}::text"
    )


def test_a_key_taken_over_is_written_once_and_not_by_a_refused_row(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An earlier row that takes its key over from a later batch that committed first writes
    the row once (an update trigger fires once); one the server refuses (a foreign key) takes
    nothing over: the later row stays, loaded, and is no reject. (The row was written twice;
    the refused row's spelling of the key was written over the later row's values, that row
    rejected as its repeat, and the counts came to -1 unchanged.)"""
    fetch(
        deployed_db,
        """
        CREATE TABLE public.parent (id int PRIMARY KEY);
        INSERT INTO public.parent VALUES (1), (2);
        CREATE TABLE public.took (k numeric PRIMARY KEY, v int REFERENCES public.parent,
                                  writes int NOT NULL DEFAULT 0);
        CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.k = 100 THEN PERFORM pg_sleep(2.5); END IF; RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON public.took
            FOR EACH ROW EXECUTE FUNCTION public.slow();
        CREATE FUNCTION public.count_writes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.writes := OLD.writes + 1; RETURN NEW; END $$;
        CREATE TRIGGER count_writes BEFORE UPDATE ON public.took
            FOR EACH ROW EXECUTE FUNCTION public.count_writes();
        """,
    )
    # (the first batch sleeps while the second, on the other stream, commits first)
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2", "SYNCPIPE_LOAD_STREAMS": "2"}
    path = tmp_path / "took.csv"
    load = ["load", str(path), "-t", "public.took", "--json"]
    write(path, ["k,v", "100,1", "3.5,1", "3.50,2", "9,1"])
    f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (3, 0, 0, 1)
    assert fetch(deployed_db, "SELECT k::text, v, writes FROM public.took WHERE k = 3.5") == [
        ("3.5", 1, 1)
    ]
    fetch(deployed_db, "TRUNCATE public.took; DELETE FROM syncpipe.load_files")
    write(path, ["k,v", "100,1", "1,999", "1.0,1", "9,1"])
    f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (3, 0, 0, 1)
    (reject,) = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert reject["line"] == "3" and "foreign key" in reject["reason"]
    assert fetch(deployed_db, "SELECT k::text, v FROM public.took WHERE k = 1") == [("1.0", 1)]


def test_a_row_an_insert_trigger_skips_is_read_and_unchanged(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A row a BEFORE INSERT trigger skips (it returns NULL) is a row read, counted unchanged,
    on a first load as on a load again; so every row read is counted once. (COPY's count left
    it out: the first load read 2 rows of 3.)"""
    fetch(
        deployed_db,
        """
        CREATE TABLE public.sieve (k int PRIMARY KEY, v text);
        CREATE FUNCTION public.sieve() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.v = 'skip' THEN RETURN NULL; END IF; RETURN NEW; END $$;
        CREATE TRIGGER sieve BEFORE INSERT ON public.sieve
            FOR EACH ROW EXECUTE FUNCTION public.sieve();
        """,
    )
    path = tmp_path / "sieve.csv"
    load = ["load", str(path), "-t", "public.sieve", "--json"]
    counts = []
    for lines in (["1,a", "2,skip", '3,"b\nc"'], ["1,a", "2,skip", '3,"b\nc"', "4,skip", "5,d"]):
        write(path, ["k,v", *lines])
        f = invoke(load, dsn=deployed_db).json()["files"][0]
        counts.append((f["rows_read"], f["inserted"], f["updated"], f["unchanged"]))
    assert counts == [(3, 2, 0, 1), (5, 1, 0, 4)]
    assert fetch(deployed_db, "SELECT k FROM public.sieve ORDER BY k") == [(1,), (3,), (5,)]


def test_a_key_taken_over_by_a_repeat_or_by_no_one(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Where the row that would take its key over from a later batch is refused (a foreign
    key), its repeat in the same batch takes the key over, and the later row is rejected as a
    repeat of that one; where an update trigger skips the row, the later row stays and is no
    reject. (The repeat overwrote the later row, reported as loaded; the skipped row left the
    later row in the table, reported as a reject.)"""
    fetch(
        deployed_db,
        """
        CREATE TABLE public.parent (id int PRIMARY KEY);
        INSERT INTO public.parent VALUES (1), (2);
        CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.v::text IN ('9', 'aa') THEN PERFORM pg_sleep(2.5); END IF;
        RETURN NEW; END $$;
        CREATE TABLE public.heir (k int PRIMARY KEY, v int REFERENCES public.parent);
        CREATE TRIGGER slow BEFORE INSERT ON public.heir
            FOR EACH ROW EXECUTE FUNCTION public.slow();
        CREATE TABLE public.skip (k int PRIMARY KEY, v text);
        CREATE TRIGGER slow BEFORE INSERT ON public.skip
            FOR EACH ROW EXECUTE FUNCTION public.slow();
        CREATE FUNCTION public.no_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RETURN NULL; END $$;
        CREATE TRIGGER no_update BEFORE UPDATE ON public.skip
            FOR EACH ROW EXECUTE FUNCTION public.no_update();
        """,
    )
    # (the first batch sleeps while the second, on the other stream, commits first)
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2", "SYNCPIPE_LOAD_STREAMS": "2"}
    path = tmp_path / "heir.csv"
    write(path, ["k,v", "100,9", "100,2", "100,1", "202,1"])
    load = ["load", str(path), "-t", "public.heir", "--json"]
    f = invoke(load, dsn=deployed_db, env=env, code=1).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (2, 0, 0, 2)
    rejects = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [r["line"] for r in rejects] == ["2", "4"]
    assert rejects[1]["reason"] == "duplicate key 100 in this file (first at line 3)"
    assert one(deployed_db, "SELECT v FROM public.heir WHERE k = 100") == 2
    path = tmp_path / "skip.csv"
    write(path, ["k,v", "100,aa", "201,bb", "100,cc", "202,dd"])
    load = ["load", str(path), "-t", "public.skip", "--json"]
    f = invoke(load, dsn=deployed_db, env=env).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"], f["rejected"]) == (3, 0, 1, 0)
    assert one(deployed_db, "SELECT v FROM public.skip WHERE k = 100") == "cc"


@pytest.mark.parametrize(
    ("kind", "first", "later"),
    [
        ("numeric", "1234567890123456789012345678901", "1234567890123456789012345678902"),
        ("numeric(40,30)", "1.5", "1.50"),
        ("varchar(3)", "abc", '"abc  "'),
    ],
)
def test_a_repeat_in_a_later_batch_names_its_first_line_for_keys_of_every_width(
    invoke: Invoke, deployed_db: str, tmp_path: Path, kind: str, first: str, later: str
) -> None:
    """A repeat in a later batch names its first row's line, and a dry run counts it, where
    the key's equality is past what Python compares by default: numbers of more than 28
    digits, a scale of 30, a varchar that cuts trailing spaces. (Two numbers of 31 digits
    were one key; "1.5" and "1.50" in a numeric(40,30), "abc" and "abc  " in a varchar(3)
    were two: a wrong line, "first earlier in the file", or a dry run's other counts.)"""
    fetch(deployed_db, f"CREATE TABLE public.wide (k {kind} PRIMARY KEY, v text)")
    distinct = first.startswith("123")
    path = tmp_path / "wide.csv"
    other = first[:-1] + "9"  # (lines of one length: batches of 2 lines each)
    write(path, ["k,v", f"{first},a", f"{later},b", f"{later},c", f"{other},d"])
    load = ["load", str(path), "-t", "public.wide", "--json"]
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2"}
    results = [
        invoke([*load, *extra], dsn=deployed_db, env=env, code=1).json()["files"][0]
        for extra in (["--dry-run"], [])
    ]
    expected = (3, 1) if distinct else (2, 2)
    assert [(f["inserted"], f["rejected"]) for f in results] == [expected, expected]
    rejects = list(csv.DictReader(Path(results[1]["reject_file"]).read_text().splitlines()))
    firsts = ["3"] if distinct else ["2", "2"]
    assert [r["reason"].split("(first at line ")[-1].rstrip(")") for r in rejects] == firsts


def test_a_row_refused_when_written_leaves_its_key_to_the_next_row(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A row the server refuses only when it writes it (a foreign key) does not take down a
    later row of the same key: that row loads, as it does when the first is rejected before
    it is written (a bad value), and a third row of the key repeats the second. (The later row
    was rejected as a repeat of the refused one, on a file loaded again.)"""
    fetch(
        deployed_db,
        "CREATE TABLE public.parent (id int PRIMARY KEY); INSERT INTO public.parent VALUES (1); "
        "CREATE TABLE public.child (k int PRIMARY KEY, p int REFERENCES public.parent)",
    )
    path = tmp_path / "child.csv"
    load = ["load", str(path), "-t", "public.child", "--json"]
    write(path, ["k,p", "1,1"])
    invoke(load, dsn=deployed_db)
    write(path, ["k,p", "1,1", "2,999", "2,1", "2,1", "3,x", "3,1"])
    f = invoke(load, dsn=deployed_db, code=1).json()["files"][0]
    assert (f["inserted"], f["unchanged"], f["rejected"]) == (2, 1, 3)
    rejects = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [r["line"] for r in rejects] == ["3", "5", "6"]
    assert "foreign key" in rejects[0]["reason"]
    assert rejects[1]["reason"] == "duplicate key 2 in this file (first at line 4)"
    assert fetch(deployed_db, "SELECT k, p FROM public.child ORDER BY k") == [
        (1, 1),
        (2, 1),
        (3, 1),
    ]
    # The same file loaded first, by COPY: the same rows, the same rejects.
    fetch(deployed_db, "TRUNCATE public.child; DELETE FROM syncpipe.load_files")
    f = invoke(load, dsn=deployed_db, code=1).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (3, 3)
    again = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [(r["line"], r["reason"]) for r in again] == [(r["line"], r["reason"]) for r in rejects]
    assert fetch(deployed_db, "SELECT k, p FROM public.child ORDER BY k") == [
        (1, 1),
        (2, 1),
        (3, 1),
    ]


def test_tables_named_like_the_loads_own_temporary_tables_are_left_alone(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A user's tables named like the temporary tables a load makes (its stage, the keys it
    compares) are neither dropped nor written. (The load dropped them: ``DROP TABLE IF
    EXISTS`` of a name alone found them in the search path when the session had no temporary
    table of that name yet.)"""
    fetch(
        deployed_db,
        "CREATE TABLE public._syncpipe_stage (important text); "
        "CREATE TABLE public._syncpipe_keys (important text); "
        "INSERT INTO public._syncpipe_stage VALUES ('kept'); "
        "INSERT INTO public._syncpipe_keys VALUES ('kept'); "
        "CREATE TABLE public.sizes (n numeric PRIMARY KEY, v text)",
    )
    path = tmp_path / "sizes.csv"
    write(path, ["n,v", "3.5,a", "1,b", "3.50,c", "2,d", "x,e"])
    load = ["load", str(path), "-t", "public.sizes", "--json"]
    f = invoke(load, dsn=deployed_db, env={"SYNCPIPE_LOAD_BATCH_ROWS": "2"}, code=1).json()
    assert (f["files"][0]["inserted"], f["files"][0]["rejected"]) == (3, 2)
    for table in ("_syncpipe_stage", "_syncpipe_keys"):
        assert fetch(deployed_db, f"SELECT important FROM public.{table}") == [("kept",)]


def test_one_file_loaded_into_two_tables_keeps_two_reject_files(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Two files of one name and content, loaded into two tables, each keep their own reject
    file. (Both wrote rejects/<name>.<sha>.rejects.csv: the second overwrote the first, and the
    first load's summary named a file holding the other table's rejects.)"""
    tables = ["public.left_t", 'public."Right T"', 'public."preis_ä"', 'public."preis_ö"']
    for n, table in enumerate(tables):
        check = "int" if n % 2 == 0 else "text CHECK (v <> 'b')"
        fetch(deployed_db, f"CREATE TABLE {table} (k int PRIMARY KEY, v {check})")
    found = []
    for n, table in enumerate(tables):
        (tmp_path / str(n)).mkdir()
        path = write(tmp_path / str(n) / "same.csv", ["k,v", "1,a", "2,b", "3,3"])
        f = invoke(["load", str(path), "-t", table, "--json"], dsn=deployed_db, code=1)
        found.append(f.json()["files"][0]["reject_file"])
    assert len(set(found)) == 4
    lines = [[r["line"] for r in csv.DictReader(Path(p).read_text().splitlines())] for p in found]
    assert lines == [["2", "3"], ["3"], ["2", "3"], ["3"]]


def test_a_key_repeated_twice_names_its_first_row_for_each_repeat(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A key that comes back twice in a later batch, or twice in a second file of the table:
    both repeats name the row that holds the key. (The second named the first repeat, itself
    rejected, as the key's first line.)"""
    fetch(deployed_db, "CREATE TABLE public.thrice (k int PRIMARY KEY, v text)")
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2"}
    one_file = tmp_path / "thrice.csv"
    write(one_file, ["k,v", "1,a", "2,b", "1,x", "1,y"])
    f = invoke(
        ["load", str(one_file), "-t", "public.thrice", "--json"], dsn=deployed_db, env=env, code=1
    ).json()["files"][0]
    rejects = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("4", "duplicate key 1 in this file (first at line 2)"),
        ("5", "duplicate key 1 in this file (first at line 2)"),
    ]
    other = tmp_path / "other.csv"
    write(other, ["k,v", "3,c", "2,x", "2,y"])
    f = invoke(
        ["load", str(other), "-t", "public.thrice", "--json"], dsn=deployed_db, env=env, code=1
    ).json()["files"][0]
    rejects = list(csv.DictReader(Path(f["reject_file"]).read_text().splitlines()))
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("3", "duplicate key 2 already loaded from thrice.csv (line 3)"),
        ("4", "duplicate key 2 already loaded from thrice.csv (line 3)"),
    ]
    assert fetch(deployed_db, "SELECT k, v FROM public.thrice ORDER BY k") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


@pytest.mark.parametrize(
    "key", ["origin", "n", "first", "x", "inserted", "_n", "_xmin", "_origin", "_ord", "_line"]
)
def test_a_key_column_named_like_the_loads_own_names_loads_again(
    invoke: Invoke, deployed_db: str, tmp_path: Path, key: str
) -> None:
    """A key column named like a column the load adds to its own queries ("origin", "n", "x",
    "_ord"...) loads again: the names were ambiguous (or the stage had the column twice) and
    the second load failed."""
    fetch(
        deployed_db,
        f'CREATE TABLE public.own ("{key}" int PRIMARY KEY, v text, load_file_id bigint '
        "DEFAULT nullif(current_setting('syncpipe.load_file_id', true), '')::bigint)",
    )
    path = tmp_path / "own.csv"
    write(path, [f"{key},v", "1,a", "2,b", "3,c"])
    load = ["load", str(path), "-t", "public.own", "--json"]
    invoke(load, dsn=deployed_db)
    write(path, [f"{key},v", "1,a", "2,B", "3,c", "4,d"])
    f = invoke(load, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["updated"], f["unchanged"]) == (1, 1, 2)


BAD_ROWS: dict[int, tuple[bytes, str, str]] = {
    # physical line: (content, column, reason fragment)
    102: (b'not-a-uuid,Bad Uuid,"[]","[]",t,"{}"', "supabase_uuid", "is not a UUID"),
    202: (
        b'11111111-1111-4111-8111-111111111111,Bad Json,"[""a@b.com"",]","[]",t,"{}"',
        "email_clean",
        "is not valid JSON",
    ),
    302: (
        b'22222222-2222-4222-8222-222222222222,Wrong Shape,"{""e"": 1}","[]",t,"{}"',
        "email_clean",
        "must be a JSON array of strings",
    ),
    352: (
        b'22222222-2222-4222-8222-333333333333,Numbers,"[]","[5551234567]",t,"{}"',
        "phone_digits",
        "must be a JSON array of strings; it holds a number",
    ),
    372: (
        b'22222222-2222-4222-8222-444444444444,Links,"[]","[]",t,"[1]"',
        "social_links",
        "must be a JSON object",
    ),
    402: (
        b'33333333-3333-4333-8333-333333333333,Seven,"[]","[]",t,"{}",extra',
        "",
        "too many fields",
    ),
    502: (b"44444444-4444-4444-8444-444444444444,Two", "", "too few fields"),
    602: (
        b'55555555-5555-4555-8555-555555555555,Caf\xe9 Owner,"[]","[]",t,"{}"',
        "full_name",
        "invalid utf-8 byte 0xE9",
    ),
    702: (
        b'66666666-6666-4666-8666-666666666666,Nul\x00Byte,"[]","[]",t,"{}"',
        "full_name",
        "NUL byte",
    ),
    752: (
        b'66666666-6666-4666-8666-777777777777,,"[]","[]",t,"{}"',
        "full_name",
        "is empty but required",
    ),
    802: (b"", "", "empty line"),
    902: (
        b'77777777-7777-4777-8777-777777777777,"Stray quote,"[]","[]",t,"{}"',
        "",
        "unterminated quoted field",
    ),
}


def test_every_kind_of_bad_row_is_rejected_with_line_column_and_reason(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Each bad row goes to the reject file (line, column, reason, original text); every good
    row loads; a duplicate key keeps the first row and names its line; exit code 1."""
    lines: list[bytes] = [HEADER.encode()]
    good = 0
    for line_no in range(2, 1202):
        if line_no in BAD_ROWS:
            lines.append(BAD_ROWS[line_no][0])
        elif line_no == 1102:
            lines.append(agent_line(12 - 2).encode())  # same key as line 12
        else:
            lines.append(agent_line(line_no - 2).encode())
            good += 1
    path = write(tmp_path / "new_agents_bad.csv", lines, newline=b"\r\n", bom=True)
    result = invoke(
        ["load", str(path), "--json"],
        code=1,
        dsn=deployed_db,
        env={"SYNCPIPE_LOAD_BATCH_ROWS": "100"},
    )
    f = result.json()["files"][0]
    assert f["status"] == "loaded_with_rejects"
    assert f["rejected"] == len(BAD_ROWS) + 1
    # the summary names the column a reason is about; rows refused whole stand alone
    by_reason = f["rejected_by_reason"]
    assert by_reason["supabase_uuid is not a UUID"] == 1
    assert by_reason["email_clean is not valid JSON"] == 1
    assert by_reason["full_name is empty but required"] == 1
    assert by_reason["empty line"] == 1
    assert by_reason["duplicate key in this file"] == 1
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == good
    rejects = {int(r["line"]): r for r in reject_rows()}
    assert set(rejects) == set(BAD_ROWS) | {1102}
    for line_no, (content, column, reason) in BAD_ROWS.items():
        assert rejects[line_no]["column"] == column, line_no
        assert reason in rejects[line_no]["reason"], (line_no, rejects[line_no]["reason"])
        if content:
            assert rejects[line_no]["raw"].encode("utf-8", "backslashreplace")[:20] in (
                content.decode("utf-8", "backslashreplace").encode()
            ), line_no
    assert "duplicate key" in rejects[1102]["reason"]
    assert "first at line 12" in rejects[1102]["reason"]
    key12 = str(uuid.UUID(int=11, version=4))
    assert (
        one(
            deployed_db,
            "SELECT full_name FROM public.new_agents WHERE supabase_uuid = %s",
            (key12,),
        )
        == "Agent Number10"
    )


def test_quoted_newlines_commas_quotes_and_large_cells(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """RFC 4180: quoted commas, doubled quotes, newlines in fields; a cell of ~500 KB."""
    members = [
        {"name": f"Member {i}", "email": f"m{i}@x.com", "bio": 'line one\nline "two", ok'}
        for i in range(4000)
    ]
    cell = json.dumps(members, indent=1).replace('"', '""')  # pretty JSON: raw newlines in the cell
    assert len(cell) > 400_000
    assert "\n" in cell
    rows = ["research_uuid,team_id,website,team_members"]
    for i in range(30):
        rows.append(
            f'{uuid.UUID(int=i + 1000, version=4)},"team, {i}","https://x.com/a?b=1,2",'
            f'"{cell if i == 7 else json.dumps(members[:2]).replace(chr(34), chr(34) * 2)}"'
        )
    path = write(tmp_path / "raw_company_info.csv", rows)
    f = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (30, 0)
    assert (
        one(
            deployed_db,
            "SELECT jsonb_array_length(team_members) FROM bronze.company_info_raw "
            "WHERE team_id = 'team, 7'",
        )
        == 4000
    )
    assert (
        one(
            deployed_db,
            "SELECT team_members -> 0 ->> 'bio' FROM bronze.company_info_raw "
            "WHERE team_id = 'team, 1'",
        )
        == 'line one\nline "two", ok'
    )


def test_sql_looking_values_are_stored_verbatim(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Values that look like SQL are data."""
    evil = "Robert'); DROP TABLE public.new_agents; --"
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1, name=f'"{evil}"')])
    invoke(["load", str(path)], dsn=deployed_db)
    assert one(deployed_db, "SELECT full_name FROM public.new_agents") == evil


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (no header row)"),
        (
            b"supabase_uuid,full_name,email_clean,phone_digits,team_id\n",
            "missing column(s) social_links",
        ),
        (
            b"supabase_uuid,full_name,email_clean,phone_digits,team_id,social_links,shoe_size\n",
            "unknown column(s) 'shoe_size'",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "is this a CSV file"),
    ],
)
def test_bad_files_fail_cleanly_before_any_row(
    invoke: Invoke, deployed_db: str, tmp_path: Path, content: bytes, message: str
) -> None:
    """Empty file, wrong header, not a CSV: one clear message, exit 1, nothing written."""
    path = tmp_path / "new_agents.csv"
    path.write_bytes(content)
    result = invoke(["load", str(path)], code=1, dsn=deployed_db)
    assert message in result.stdout
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0


def test_header_only_file_loads_nothing_and_succeeds(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A header-only file is a valid, empty load."""
    path = write(tmp_path / "new_agents.csv", [HEADER])
    f = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert (f["status"], f["rows_read"]) == ("loaded", 0)


def test_missing_file_and_unmapped_name_are_usage_errors(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A path that does not exist, or a name no pattern maps, exits 2 with a clear message."""
    result = invoke(["load", str(tmp_path / "nope.csv")], code=2, dsn=deployed_db)
    assert "does not exist" in result.stderr
    (tmp_path / "agents.csv").write_text(HEADER + "\n")
    result = invoke(["load", str(tmp_path / "agents.csv")], code=2, dsn=deployed_db)
    assert "matches no CSV source" in result.stderr and "--table" in result.stderr
    # (no path given: the setting's folder, named as the setting)
    result = invoke(["load"], code=2, dsn=deployed_db, env={"SYNCPIPE_DATA_DIR": "nodata"})
    assert "The data folder nodata does not exist (setting SYNCPIPE_DATA_DIR" in result.stderr


def test_table_override_and_folders(invoke: Invoke, deployed_db: str, tmp_path: Path) -> None:
    """--table loads a file whatever its name; a folder loads its matching files only."""
    write(tmp_path / "agents_export.csv", [HEADER, agent_line(1)])
    invoke(
        ["load", str(tmp_path / "agents_export.csv"), "--table", "public.new_agents"],
        dsn=deployed_db,
    )
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "new_agents_a.csv", [HEADER, agent_line(2)])
    write(folder / "new_agents_b.csv", [HEADER, agent_line(3)])
    (folder / "notes.txt").write_text("not data")
    data = invoke(["load", str(folder), "--json", "--jobs", "2"], dsn=deployed_db).json()
    assert sorted(Path(f["file"]).name for f in data["files"]) == [
        "new_agents_a.csv",
        "new_agents_b.csv",
    ]
    assert data["not_matched"] == [str(folder / "notes.txt")]
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 3


def test_table_named_in_upper_case_is_the_table_sql_reads(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """SQL folds unquoted names to lower case: `-t PUBLIC.NEW_AGENTS` loads public.new_agents,
    and a load of it by its usual name knows the file (it was taken for a missing table, waited
    out the lock timeout and blamed a merge)."""
    path = write(tmp_path / "agents_export.csv", [HEADER, agent_line(1), agent_line(2)])
    started = time.perf_counter()
    data = invoke(
        ["load", str(path), "--table", "PUBLIC.NEW_AGENTS", "--json"],
        dsn=deployed_db,
        env={"SYNCPIPE_LOCK_TIMEOUT": "20"},
    ).json()
    assert time.perf_counter() - started < 15
    assert [(f["table"], f["status"], f["inserted"]) for f in data["files"]] == [
        ("public.new_agents", "loaded", 2)
    ]
    again = invoke(["load", str(path), "-t", "new_agents", "--json"], dsn=deployed_db).json()
    assert again["files"][0]["status"] == "skipped"
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 2


def test_table_names_are_read_as_sql_reads_them(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A quoted name is the table of that exact name, in any schema: `"People"` is not
    `people` (its rows went to people, reported as loaded into People), a dot inside quotes
    is part of the name; what is no table (a view, an index, a name of four parts, another
    database's) is said in one sentence, exit 2."""
    fetch(
        deployed_db,
        'CREATE TABLE public.people (id int PRIMARY KEY, name text); '
        'CREATE TABLE public."People" (id int PRIMARY KEY, name text); '
        'CREATE SCHEMA "we.ird"; CREATE TABLE "we.ird"."My Leads" (id int PRIMARY KEY, name text); '
        'CREATE TABLE public."a.b" (id int PRIMARY KEY, name text); '
        "CREATE VIEW public.people_view AS SELECT * FROM public.people",
    )  # fmt: skip
    path = write(tmp_path / "people.csv", ["id,name", "10,carol", "11,dave"])
    for name, spelled in [
        ('"People"', 'public."People"'),
        ('"we.ird"."My Leads"', None),
        ('"a.b"', 'public."a.b"'),  # (no schema, a dot in the name: public's)
    ]:
        data = invoke(["load", str(path), "-t", name, "--json"], dsn=deployed_db).json()
        assert (data["files"][0]["table"], data["files"][0]["inserted"]) == (spelled or name, 2)
    assert one(deployed_db, 'SELECT count(*) FROM public."People"') == 2
    assert one(deployed_db, 'SELECT count(*) FROM "we.ird"."My Leads"') == 2
    assert one(deployed_db, "SELECT count(*) FROM public.people") == 0
    again = invoke(["load", str(path), "-t", 'PUBLIC."People"', "--json"], dsn=deployed_db)
    assert again.json()["files"][0]["status"] == "skipped"
    for name, phrase in [
        ("people_view", "public.people_view is a view, not a table"),
        ("public.people_pkey", "public.people_pkey is an index, not a table"),
        ("a.b.c.d", "'a.b.c.d' is not a table name"),
        ("elsewhere.public.people", "is not a table name"),
    ]:
        res = invoke(["load", str(path), "-t", name], code=2, dsn=deployed_db)
        assert phrase in res.stderr, (name, res.stderr)


def test_refusals_of_the_table_or_the_role_fail_the_file_whole(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A table published for updates without a replica identity refuses every update, and a
    role whose transactions are read-only refuses every write, the ledger's first: the file
    fails in the server's words (it had every row rejected, or ended the command with a bare
    database error and no result), and loads once that is mended."""
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1), agent_line(2)])
    invoke(["load", str(path)], dsn=deployed_db)
    fetch(
        deployed_db,
        "ALTER TABLE public.new_agents REPLICA IDENTITY NOTHING; "
        "CREATE PUBLICATION test_updates FOR TABLE public.new_agents",
    )
    write(path, [HEADER, agent_line(1, name="Renamed One"), agent_line(2)])
    data = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()
    (failed,) = data["files"]
    assert (failed["status"], failed["rejected"]) == ("failed", 0)
    assert "does not have a replica identity" in failed["message"]
    fetch(deployed_db, "DROP PUBLICATION test_updates")
    done = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert (done["status"], done["updated"], done["rejected"]) == ("loaded", 1, 0)

    readonly = "ALTER ROLE {role} SET default_transaction_read_only = on"
    with _role(deployed_db, "readonly", ("public", "bronze", "syncpipe"), readonly) as (_, dsn):
        write(path, [HEADER, agent_line(3)])
        res = invoke(["load", str(path), "--json"], code=1, dsn=dsn)
        (failed,) = res.json()["files"]
        assert failed["status"] == "failed"
        assert "cannot execute INSERT in a read-only transaction" in failed["message"]


def _disk_full_at(dsn: str, name: str) -> None:
    """The server refuses, for good, to write the new_agents row named ``name``: a full disk
    (SQLSTATE 53100), raised by a trigger (``DROP TRIGGER test_full`` mends it)."""
    fetch(
        dsn,
        f"""
        CREATE FUNCTION public.test_full() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.full_name = '{name}' THEN
                RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER test_full BEFORE INSERT ON public.new_agents
            FOR EACH ROW EXECUTE FUNCTION public.test_full();
        """,
    )


def test_a_file_that_fails_part_way_counts_the_batches_it_kept(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The server refuses the third batch for good (a full disk, here raised by a trigger):
    the file fails, and its result counts the two batches committed before it, which are in
    the table (it said 0 rows read); the next load resumes from them."""
    _disk_full_at(deployed_db, "Agent Number250")
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(350)])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "100", "SYNCPIPE_LOAD_STREAMS": "1"}
    res = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db, env=env).json()
    (failed,) = res["files"]
    assert failed["status"] == "failed"
    assert "could not extend file" in failed["message"]
    assert "line 201" in failed["message"]  # (batches end at line 100 and 200)
    assert (failed["rows_read"], failed["inserted"], failed["rejected"]) == (199, 199, 0)
    assert res["totals"]["inserted"] == 199
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 199
    fetch(deployed_db, "DROP TRIGGER test_full ON public.new_agents")
    done = invoke(["load", str(path), "--json"], dsn=deployed_db, env=env).json()["files"][0]
    assert (done["status"], done["rows_read"], done["inserted"]) == ("loaded", 350, 350)
    assert done["resumed_batches"] == 2


@pytest.mark.parametrize("language", ["C", "de_DE.UTF-8"])
def test_rows_a_policy_refuses_are_rejected_in_any_language(
    invoke: Invoke, deployed_db: str, tmp_path: Path, language: str
) -> None:
    """Row level security refuses one row of a role held to it: that row is rejected, the
    others load (exit 1). The same where the server speaks German (``lc_messages``): the
    refusal was told apart by its English words, so there the whole file failed."""
    setup = [
        "CREATE POLICY test_read ON public.new_agents FOR SELECT TO {role} USING (true)",
        "CREATE POLICY test_add ON public.new_agents FOR INSERT TO {role} "
        "WITH CHECK (full_name <> 'Agent Number5')",
    ]
    require_language(deployed_db, language)
    setup.append(f"ALTER ROLE {{role}} SET lc_messages = '{language}'")
    schemas = ("public", "bronze", "syncpipe")
    with _role(deployed_db, "policy", schemas, *setup, bypassrls=False) as (_, dsn):
        path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(10)])
        f = invoke(["load", str(path), "--json"], code=1, dsn=dsn).json()["files"][0]
        assert (f["status"], f["inserted"], f["rejected"]) == ("loaded_with_rejects", 9, 1)
        (reject,) = reject_rows()
        assert reject["line"] == "7"
        if language == "C":
            assert "row-level security" in reject["reason"]
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 9


def test_a_forced_load_that_failed_resumes_without_force(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """``--force`` of a loaded file fails part way, and its message says to run the load again:
    run again (without ``--force``), it resumes and finishes. (It said "already loaded ...
    skipped", exit 0, and left the table half old, half new.)"""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(350)])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "100", "SYNCPIPE_LOAD_STREAMS": "1"}
    invoke(["load", str(path)], dsn=deployed_db, env=env)
    fetch(deployed_db, "UPDATE public.new_agents SET full_name = 'Edited'")
    _disk_full_at(deployed_db, "Agent Number250")
    res = invoke(["load", str(path), "--force", "--json"], code=1, dsn=deployed_db, env=env)
    (failed,) = res.json()["files"]
    assert failed["status"] == "failed" and "run the load again" in failed["message"]
    assert (failed["rows_read"], failed["updated"]) == (199, 199)
    fetch(deployed_db, "DROP TRIGGER test_full ON public.new_agents")
    f = invoke(["load", str(path), "--json"], dsn=deployed_db, env=env).json()["files"][0]
    assert (f["status"], f["resumed_batches"], f["rows_read"], f["updated"]) == (
        "loaded",
        2,
        350,
        350,
    )
    assert (
        one(deployed_db, "SELECT count(*) FROM public.new_agents WHERE full_name = 'Edited'") == 0
    )
    again = invoke(["load", str(path), "--json"], dsn=deployed_db).json()["files"][0]
    assert again["status"] == "skipped"


@pytest.mark.parametrize("language", ["C", "de_DE.UTF-8"])
def test_the_record_and_column_copy_refused_are_read_in_any_language(
    deployed_db: str, language: str
) -> None:
    """The record COPY refused, and its column, are read from the server's context whatever
    language it speaks: a refused record splits its batch there (in German, the whole batch
    went to the slow path, and the reject named no column)."""
    from syncpipe.services.load.errors import copy_record, server_reason

    require_language(deployed_db, language)
    copy_in = "COPY refusing (name, age) FROM STDIN (FORMAT csv)"
    with psycopg.connect(deployed_db, autocommit=True) as conn:
        conn.execute(f"SET lc_messages = '{language}'")
        conn.execute("CREATE TABLE refusing (name text, age int CHECK (age >= 0))")
        with (
            pytest.raises(psycopg.errors.CheckViolation) as refused,
            conn.cursor().copy(copy_in) as copy,
        ):
            copy.write(b"ann,1\nbob,2\ncid,-3\ndan,4\n")
        assert copy_record(refused.value) == 3
        assert server_reason(refused.value) == ("", "violates refusing_age_check")
        with (
            pytest.raises(psycopg.errors.InvalidTextRepresentation) as bad,
            conn.cursor().copy(copy_in) as copy,
        ):
            copy.write(b"ann,1\nbob,two\n")
        assert copy_record(bad.value) == 2
        assert server_reason(bad.value)[0] == "age"


def test_the_keys_a_reload_left_unchanged_go_with_their_file(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """The keys a load left unchanged (``syncpipe.load_seen``, to find a key repeated later in
    the file) carry no foreign key, checked row by row at half the cost of a file loaded again:
    a deploy drops an older ledger's. They go with their file: a forced load started over
    forgets its earlier try's, and a finished load its own."""
    fks = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'syncpipe.load_seen'::regclass"
    fetch(  # (by another name too: one a person renamed, say)
        deployed_db,
        "ALTER TABLE syncpipe.load_seen ADD CONSTRAINT load_seen_file_id_fkey FOREIGN KEY "
        "(file_id) REFERENCES syncpipe.load_files (id) ON DELETE CASCADE, "
        "ADD CONSTRAINT seen_of_file FOREIGN KEY (file_id) REFERENCES syncpipe.load_files (id)",
    )
    invoke(["deploy"], dsn=deployed_db)
    assert one(deployed_db, fks + " AND contype = 'f'") == 0
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(350)])
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "100", "SYNCPIPE_LOAD_STREAMS": "1"}
    invoke(["load", str(path)], dsn=deployed_db, env=env)
    fetch(
        deployed_db,
        "UPDATE public.new_agents SET full_name = 'Edited' WHERE full_name = 'Agent Number250'",
    )
    _disk_full_at(deployed_db, "Agent Number250")
    invoke(["load", str(path), "--force"], code=1, dsn=deployed_db, env=env)
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_seen") == 199
    fetch(deployed_db, "DROP TRIGGER test_full ON public.new_agents")
    f = invoke(["load", str(path), "--force", "--json"], dsn=deployed_db, env=env).json()
    assert (f["files"][0]["unchanged"], f["files"][0]["updated"]) == (349, 1)
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_seen") == 0


def test_a_role_that_may_not_use_the_ledger_is_named(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A role with rights on the tables but none on the ledger's schema: one sentence naming
    the role and the remedy, exit 2 (it was a bare "Database error", exit 1)."""
    with _role(deployed_db, "noledger", ("public", "bronze")) as (role, dsn):
        path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1)])
        res = invoke(["load", str(path)], code=2, dsn=dsn)
        assert f"The role {role} may not use syncpipe's load ledger" in res.stderr
        assert "permission denied for schema syncpipe" in res.stderr
        # (and one that may use the ledger but not the pages' schema: that schema is named)
        with psycopg.connect(deployed_db, autocommit=True) as admin:
            admin.execute(f"GRANT USAGE ON SCHEMA syncpipe TO {role}")
            admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA syncpipe TO {role}")
            admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA syncpipe TO {role}")
            admin.execute(f"REVOKE USAGE ON SCHEMA bronze FROM {role}")
        pages = write(
            tmp_path / "raw_company_info.csv", ["research_uuid,team_id,website,team_members"]
        )
        res = invoke(["load", str(pages)], code=2, dsn=dsn)
        assert f"The role {role} may not look up bronze.company_info_raw" in res.stderr
        assert "permission denied for schema bronze" in res.stderr


@pytest.mark.parametrize("revoked", ["INSERT", "INSERT, UPDATE"])
def test_a_role_without_the_privilege_fails_its_file_at_once(
    invoke: Invoke, deployed_db: str, tmp_path: Path, revoked: str
) -> None:
    """A batch the server refuses for good (here: the role may read the table, not write it)
    fails its file at once, in the server's words and naming the role; the other table's file
    loads. (It was retried until the lock timeout and then blamed on "a merge", exit 3.)"""
    schemas = ("public", "bronze", "syncpipe")
    revoke = f"REVOKE {revoked} ON public.new_agents FROM {{role}}"
    with _role(deployed_db, "reader", schemas, revoke) as (role, dsn):
        folder = tmp_path / "in"
        folder.mkdir()
        write(folder / "new_agents.csv", [HEADER, agent_line(1), agent_line(2)])
        pages = (Path(__file__).parent.parent / "data" / "raw_company_info.csv").read_text()
        write(folder / "raw_company_info.csv", pages.splitlines()[:2])
        started = time.perf_counter()
        data = invoke(
            ["load", str(folder), "--json"],
            code=1,
            dsn=dsn,
            env={"SYNCPIPE_LOCK_TIMEOUT": "30"},
        ).json()
        assert time.perf_counter() - started < 20
        by_table = {f["table"]: f for f in data["files"]}
        failed = by_table["public.new_agents"]
        assert (failed["status"], failed["rejected"]) == ("failed", 0)  # (no row's fault)
        assert "permission denied for table new_agents" in failed["message"]
        assert f"the role {role} lacks a privilege" in failed["message"]
        assert "line 2" in failed["message"]
        assert by_table["bronze.company_info_raw"]["status"] == "loaded"
        assert one(deployed_db, "SELECT count(*) FROM bronze.company_info_raw") == 1
        assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0


def test_a_dry_run_of_a_reload_counts_as_the_load_does(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A dry run of a changed file with a key repeated in a later batch gives the counts the
    load then gives. (The repeat, which the server had counted as an update of the table's
    row, was taken off the inserted rows.)"""
    fetch(deployed_db, "CREATE TABLE public.dry (k int PRIMARY KEY, v text)")
    path = tmp_path / "dry.csv"
    load = ["load", str(path), "-t", "public.dry", "--json"]
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2"}
    write(path, ["k,v", "1,a", "2,b", "3,c", "4,d"])
    invoke(load, dsn=deployed_db, env=env)
    write(path, ["k,v", "1,a", "2,b", "3,c", "4,dd", "5,e", "1,LATER", "2,b", "6,f"])
    counts = []
    for extra in (["--dry-run"], []):
        f = invoke([*load, *extra], dsn=deployed_db, env=env, code=1).json()["files"][0]
        counts.append((f["inserted"], f["updated"], f["unchanged"], f["rejected"]))
    assert counts == [(2, 1, 3, 2), (2, 1, 3, 2)]


@pytest.mark.parametrize(
    ("kind", "first", "later", "repeat"),
    [
        ("numeric", "3.5", "3.50", True),
        ("int", "3", " 03", True),
        ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC999C0B4EF8BB6D6BB9BD380A11", True),
        (
            "text",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            False,
        ),
    ],
)
def test_a_dry_run_sees_a_key_spelled_otherwise_as_the_load_does(
    invoke: Invoke,
    deployed_db: str,
    tmp_path: Path,
    kind: str,
    first: str,
    later: str,
    repeat: bool,
) -> None:
    """A dry run judges a key repeated in a later batch by its value as the load does: "3.50"
    repeats 3.5 in a numeric, but two cases of a UUID's text are two keys in a text column.
    (It compared the file's text, UUIDs aside: it missed the first and took the second for a
    repeat.)"""
    fetch(deployed_db, f"CREATE TABLE public.spell (k {kind} PRIMARY KEY, v text)")
    path = tmp_path / "spell.csv"
    other = {"uuid": "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "text": "x"}.get(kind, "9")
    write(path, ["k,v", f"{first},a", f"{other},b", f'"{later}",c'])
    load = ["load", str(path), "-t", "public.spell", "--json"]
    env = {"SYNCPIPE_LOAD_BATCH_ROWS": "2"}
    counts = []
    for extra in (["--dry-run"], []):
        result = invoke([*load, *extra], dsn=deployed_db, env=env, code=1 if repeat else 0)
        f = result.json()["files"][0]
        counts.append((f["inserted"], f["rejected"]))
    assert counts == [(2, 1), (2, 1)] if repeat else [(3, 0), (3, 0)]


def test_dry_run_validates_and_writes_nothing(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """--dry-run reports counts and rejects but leaves the tables and the ledger untouched."""
    path = write(
        tmp_path / "new_agents.csv",
        [HEADER, agent_line(1), 'not-a-uuid,X,"[]","[]",t,"{}"', agent_line(2)],
    )
    f = invoke(["load", str(path), "--dry-run", "--json"], code=1, dsn=deployed_db).json()["files"][
        0
    ]
    assert (f["status"], f["inserted"], f["rejected"]) == ("dry_run", 2, 1)
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 0
    assert one(deployed_db, "SELECT count(*) FROM syncpipe.load_files") == 0


def test_non_utf8_file_rejects_bad_rows_or_loads_with_encoding(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Latin-1 rows are rejected naming line and byte; --encoding latin-1 loads them right."""
    lines = [
        HEADER.encode(),
        agent_line(1).encode(),
        agent_line(2, name="Jos\xe9 Mu\xf1oz").encode("latin-1"),
    ]
    path = write(tmp_path / "new_agents.csv", lines)
    invoke(["load", str(path)], code=1, dsn=deployed_db)
    rejects = reject_rows()
    assert rejects[0]["line"] == "3"
    assert "byte 0xE9" in rejects[0]["reason"] and "--encoding" in rejects[0]["reason"]
    invoke(["load", str(path), "--encoding", "latin-1"], dsn=deployed_db)
    assert (
        one(
            deployed_db,
            "SELECT count(*) FROM public.new_agents WHERE full_name = %s",
            ("José Muñoz",),
        )
        == 1
    )


def test_load_before_deploy_is_a_clear_error(invoke: Invoke, fresh_db: str, tmp_path: Path) -> None:
    """Loading into a database syncpipe never deployed says so (exit 2)."""
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1)])
    result = invoke(["load", str(path)], code=2, dsn=fresh_db)
    assert "syncpipe deploy" in result.stderr


def _big_file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "new_agents_big.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER + "\n")
        for i in range(rows):
            fh.write(agent_line(i) + "\n")
    return path


def _wait_for_copy(dsn: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = fetch(
            dsn,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'COPY%%' AND pid <> pg_backend_pid()",
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.02)
    raise AssertionError("the load never started its COPY")


def _cli(dsn: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": dsn, "SYNCPIPE_LOAD_BATCH_ROWS": "2000"}
    return subprocess.Popen(
        [sys.executable, "-m", "syncpipe", "load", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_database_going_away_mid_load(deployed_db: str, tmp_path: Path) -> None:
    """The server ends a session mid-load: clear error, exit 3; the rerun resumes and
    completes the file."""
    path = _big_file(tmp_path, 300_000)
    proc = _cli(deployed_db, str(path))
    pid = _wait_for_copy(deployed_db)
    time.sleep(0.2)
    with psycopg.connect(deployed_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "was lost while loading new_agents_big.csv" in err
    assert "run the load again" in err
    assert "Traceback" not in err
    # (one sentence: not the pool's own "nothing was kept" inside it, which says the opposite)
    sentence = next(line for line in err.splitlines() if line.startswith("Error:"))
    assert sentence.count("was lost") == 1 and "nothing was kept" not in err, err
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") < 300_000
    rerun = _cli(deployed_db, str(path))
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 300_000


def test_many_streams_load_a_small_file(deployed_db: str, tmp_path: Path) -> None:
    """SYNCPIPE_LOAD_STREAMS past 24: the first batches' caps were 0 bytes, and the reader
    looked for a record boundary in a window that never grew, at full CPU for ever."""
    path = write(tmp_path / "new_agents.csv", [HEADER] + [agent_line(i) for i in range(50)])
    done = subprocess.run(
        [sys.executable, "-m", "syncpipe", "load", str(path), "--json"],
        env={
            **os.environ,
            "SYNCPIPE_DATABASE_URL": deployed_db,
            "SYNCPIPE_LOAD_STREAMS": "25",
            "SYNCPIPE_POOL_MAX_SIZE": "25",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"][0]["inserted"] == 50
