"""Hostile files: each bad row is rejected with a reason naming line and column, every good row
loads, nothing is followed or quoted that should not be, and nothing deadlocks."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import Invoke, fetch, one
from tests.test_load import HEADER, agent_line, write

PAGE_HEADER = "research_uuid,team_id,website,team_members"


def _cell(value: object) -> str:
    return '"' + json.dumps(value).replace('"', '""') + '"'


def _page(i: int, members: list[dict[str, object]], *, team: str | None = None) -> str:
    key = uuid.UUID(int=10_000 + i, version=4)
    return f"{key},{team or f'team-{i}'},https://x.com/{i},{_cell(members)}"


def _by_socket(dsn: str) -> bool:
    """The server is reached by a Unix socket (the embedded one: its folder is root's only)."""
    from syncpipe.core.dsn import parse_dsn

    return parse_dsn(dsn).get("host", "").startswith("/")


def _load_unprivileged(
    dsn: str, tmp_path: Path, folder: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`syncpipe load FOLDER` in a process for which mode 000 means no access: as root,
    without the capabilities that override file permissions (skipped without setpriv)."""
    command = [sys.executable, "-m", "syncpipe", "load", str(folder), *args]
    if os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    logs = str(tmp_path / "logs")
    env = {**os.environ, "SYNCPIPE_DATABASE_URL": dsn, "SYNCPIPE_LOGS_DIR": logs}
    try:
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=120, check=False
        )
    except FileNotFoundError:
        pytest.skip("setpriv is not installed (util-linux)")


def _rejects(result_file: str) -> dict[int, dict[str, str]]:
    with Path(result_file).open(encoding="utf-8", newline="") as fh:
        return {int(r["line"]): r for r in csv.DictReader(fh)}


def test_deep_json_and_unindexable_values_are_rejected_and_the_merge_runs(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """15,000 levels of JSON, an 8,000-character team_id or e-mail: each row rejected naming
    line and column (before the server sees it), the 100 good rows of each file load, and the
    merge afterwards succeeds."""
    deep = "[" * 15_000 + "]" * 15_000
    lines = [HEADER] + [agent_line(i) for i in range(100)]
    lines.insert(11, agent_line(500).replace('"{""site""', '"{""x"": ' + deep + ', ""site""'))
    lines.insert(21, agent_line(501).replace(",team-1,", ",team-" + "t" * 8000 + ","))
    lines.insert(31, agent_line(502).replace("agent502@", "a" * 8000 + "@"))
    lines.insert(
        41,
        agent_line(503).replace('"{""site""', '"{""x"": ' + "[" * 101 + "]" * 101 + ', ""site""'),
    )
    path = write(tmp_path / "new_agents.csv", lines)
    f = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (100, 4)
    rejects = _rejects(f["reject_file"])
    assert (
        rejects[12]["column"] == "social_links"
        and "nested deeper than 100" in rejects[12]["reason"]
    )
    assert rejects[22]["column"] == "team_id" and "at most 500" in rejects[22]["reason"]
    assert rejects[32]["column"] == "email_clean" and "at most 500" in rejects[32]["reason"]
    assert rejects[42]["column"] == "social_links" and "nested deeper" in rejects[42]["reason"]
    assert all(len(r["value"]) < 60 and len(r["reason"]) < 200 for r in rejects.values())

    members = [{"name": f"Member {k}", "email": f"m{k}@x.com"} for k in range(3)]
    pages = [PAGE_HEADER] + [_page(i, members) for i in range(100)]
    deep_member = _page(500, [*members, {"name": "Deep", "links": None}])
    pages.insert(5, deep_member.replace('""links"": null', '""links"": ' + deep))
    pages.insert(15, _page(501, [{"name": "Long", "email": "b" * 8000 + "@x.com"}]))
    pages.insert(25, _page(502, members, team="T" * 8000))
    path = write(tmp_path / "raw_company_info.csv", pages)
    f = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (100, 3)
    rejects = _rejects(f["reject_file"])
    assert rejects[6]["column"] == "team_members" and "nested deeper" in rejects[6]["reason"]
    assert rejects[16]["column"] == "team_members" and "at most 500" in rejects[16]["reason"]
    assert rejects[26]["column"] == "team_id"
    invoke(["merge"], dsn=deployed_db)
    assert one(deployed_db, "SELECT count(*) FROM public.unified_company_member") == 300


def test_a_symlink_out_of_the_folder_is_refused_and_never_quoted(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A link named like a feed file that leads out of the folder is not followed: the file
    fails with a clear sentence, its content appears nowhere, the other files load."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "new_agents_a.csv", [HEADER, agent_line(1)])
    (folder / "new_agents_x.csv").symlink_to(secret)
    result = invoke(["load", str(folder), "--json"], code=1, dsn=deployed_db)
    files = {Path(f["file"]).name: f for f in result.json()["files"]}
    assert files["new_agents_a.csv"]["status"] == "loaded"
    assert files["new_agents_x.csv"]["status"] == "failed"
    assert "symbolic link to a file outside" in files["new_agents_x.csv"]["message"]
    assert "root:x" not in result.stdout + result.stderr
    named = invoke(["load", str(folder / "new_agents_x.csv")], code=1, dsn=deployed_db)
    assert "not followed" in named.stdout and "root:x" not in named.stdout + named.stderr


def test_a_file_without_read_permission_fails_alone_naming_itself(
    deployed_db: str, tmp_path: Path
) -> None:
    """A file of the folder that cannot be read (mode 000; as root, without the capability to
    override it) used to end the whole load with "Unexpected error: PermissionError", exit 1,
    and no other file's result. Now that file fails, named, and the others load."""
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "new_agents_a.csv", [HEADER, agent_line(1)])
    write(folder / "new_agents_b.csv", [HEADER, agent_line(2)])
    (folder / "new_agents_b.csv").chmod(0)
    if os.geteuid() == 0 and _by_socket(deployed_db):
        pytest.skip("root without its capabilities cannot reach the server's socket folder")
    done = _load_unprivileged(deployed_db, tmp_path, folder, "--json")
    assert done.returncode == 1, done.stderr
    files = {Path(f["file"]).name: f for f in json.loads(done.stdout)["files"]}
    assert files["new_agents_a.csv"]["status"] == "loaded"
    assert files["new_agents_b.csv"]["status"] == "failed"
    assert files["new_agents_b.csv"]["message"] == "cannot be read: Permission denied"
    assert "Unexpected error" not in done.stderr
    assert one(deployed_db, "SELECT count(*) FROM new_agents") == 1


def test_links_to_nothing_fail_alone_and_an_unreadable_folder_is_named(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A link to a missing file was left out of a folder's load without a word, and named, it
    was "not a regular file (a pipe or a device)"; a loop of links ended the load with
    "Unexpected error: RuntimeError"; a subfolder that cannot be read was left out, silently."""
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "new_agents_a.csv", [HEADER, agent_line(1)])
    (folder / "new_agents_gone.csv").symlink_to(folder / "missing.csv")
    (folder / "new_agents_loop.csv").symlink_to(folder / "new_agents_loop.csv")
    result = invoke(["load", str(folder), "--json"], code=1, dsn=deployed_db)
    files = {Path(f["file"]).name: f for f in result.json()["files"]}
    assert files["new_agents_a.csv"]["status"] == "loaded"
    for name in ("new_agents_gone.csv", "new_agents_loop.csv"):
        assert files[name]["status"] == "failed"
        assert "symbolic link that leads to no file" in files[name]["message"]
    named = invoke(["load", str(folder / "new_agents_gone.csv")], code=2, dsn=deployed_db)
    assert "is a symbolic link that leads to no file" in named.stderr

    sub = folder / "sub"
    sub.mkdir()
    write(sub / "new_agents_sub.csv", [HEADER, agent_line(2)])
    sub.chmod(0)
    try:
        done = _load_unprivileged(deployed_db, tmp_path, folder)
    finally:
        sub.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert f"Error: {sub} cannot be read (Permission denied)" in done.stderr


def test_errors_quote_only_a_short_excerpt(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A 10,002-column header gives a message of a few hundred characters, not 89 KB."""
    names = ",".join(f"column_number_{i}" for i in range(10_002))
    path = tmp_path / "new_agents.csv"
    path.write_text(names + "\n")
    data = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()
    message = data["files"][0]["message"]
    assert "10,002 unknown column(s)" in message
    assert len(message) < 600


def test_files_with_the_same_keys_never_deadlock(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Two files of one table with the same keys, --jobs 2: loaded one after the other in name
    order (the first file keeps the keys, the second file's rows are rejected, every time);
    changed versions of both loaded at once in two processes end without a deadlock error,
    the first file updating its own rows and the second still refused."""
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [agent_line(i) for i in range(3000)]
    write(folder / "new_agents_a.csv", [HEADER, *rows])
    write(
        folder / "new_agents_b.csv",
        [HEADER, *(r.replace("Agent Number", "Agent B") for r in reversed(rows))],
    )
    data = invoke(["load", str(folder), "--json", "--jobs", "2"], code=1, dsn=deployed_db).json()
    assert [f["status"] for f in data["files"]] == ["loaded", "loaded_with_rejects"]
    assert data["files"][1]["rejected"] == 3000
    assert (
        one(deployed_db, "SELECT count(*) FROM public.new_agents WHERE full_name LIKE 'Agent N%%'")
        == 3000
    )

    env = {**os.environ, "SYNCPIPE_DATABASE_URL": deployed_db, "SYNCPIPE_LOAD_BATCH_ROWS": "200"}
    write(
        folder / "new_agents_a.csv", [HEADER, *(r.replace("Agent Number", "Agent C") for r in rows)]
    )
    write(
        folder / "new_agents_b.csv",
        [HEADER, *(r.replace("Agent Number", "Agent D") for r in reversed(rows))],
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "syncpipe", "load", str(folder / name)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("new_agents_a.csv", "new_agents_b.csv")
    ]
    codes = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        assert "deadlock" not in (out + err).lower()
    assert codes == [0, 1]
    assert one(deployed_db, "SELECT count(*) FROM public.new_agents") == 3000
    assert (
        one(deployed_db, "SELECT count(*) FROM public.new_agents WHERE full_name LIKE 'Agent C%%'")
        == 3000
    )


@pytest.mark.parametrize("hostile", ["end", "middle"])
def test_an_unterminated_quote_is_one_reject(
    invoke: Invoke, deployed_db: str, tmp_path: Path, hostile: str
) -> None:
    """A stray quote at the end of the file, or in the middle, costs that line only."""
    lines = [HEADER] + [agent_line(i) for i in range(50)]
    bad = '77777777-7777-4777-8777-777777777777,"Stray quote,"[]","[]",t,"{}"'
    lines.insert(51 if hostile == "end" else 20, bad)
    path = write(tmp_path / "new_agents.csv", lines)
    f = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (50, 1)
    (row,) = _rejects(f["reject_file"]).values()
    assert "unterminated quoted field" in row["reason"] or "unbalanced quote" in row["reason"]


def test_repeated_keys_keep_the_first_row_whatever_stream_commits_first(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """Keys repeated across many small batches loaded by parallel streams: the first row of
    each key stands, every later one is rejected naming the line of the first."""
    rng = random.Random(7)
    lines = [agent_line(i) for i in range(3000)]
    for _ in range(60):
        first = rng.randrange(0, 2500)
        lines.insert(rng.randrange(first + 1, len(lines) + 1), agent_line(first, name="Repeat"))
    first_line: dict[str, int] = {}
    first_name: dict[str, str] = {}
    expected: dict[int, str] = {}
    for number, line in enumerate(lines, start=2):
        key, name = line.split(",", 2)[:2]
        if key in first_line:
            expected[number] = f"duplicate key {key} in this file (first at line {first_line[key]})"
        else:
            first_line[key], first_name[key] = number, name
    path = write(tmp_path / "new_agents.csv", [HEADER, *lines])
    f = invoke(
        ["load", str(path), "--json"],
        code=1,
        dsn=deployed_db,
        env={"SYNCPIPE_LOAD_BATCH_ROWS": "40", "SYNCPIPE_LOAD_STREAMS": "3"},
    ).json()["files"][0]
    rejects = _rejects(f["reject_file"])
    assert {line: r["reason"] for line, r in rejects.items()} == expected
    stored = fetch(deployed_db, "SELECT supabase_uuid::text, full_name FROM public.new_agents")
    assert dict(stored) == first_name


def test_a_line_longer_than_32_mib_is_one_reject_and_no_part_of_it_a_row(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """A line of over 32 MiB whose tail looks like a row of its own: the line is one reject
    saying how long it is, the rows around it load, and its tail is no row (it was cut at
    32 MiB and its tail inserted as a row that is not in the file). The file is read whole:
    loading it again finds it loaded."""
    injected = str(uuid.UUID(int=99, version=4))
    huge = f'U1,{"A" * (33 * 2**20)}{injected},Injected Person,"[]","[]",t1,'
    path = write(tmp_path / "new_agents.csv", [HEADER, agent_line(1), huge, agent_line(2)])
    f = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["rows_read"], f["inserted"], f["rejected"]) == (3, 2, 1)
    (reject,) = _rejects(f["reject_file"]).values()
    assert reject["line"] == "3" and "over the 32 MiB a line may have" in reject["reason"]
    assert not fetch(deployed_db, "SELECT 1 FROM new_agents WHERE full_name LIKE 'Injected%%'")
    again = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert again["status"] == "loaded_with_rejects" and again["rejected"] == 1


def test_reject_reasons_name_no_internal_table(
    invoke: Invoke, deployed_db: str, tmp_path: Path
) -> None:
    """An empty team_members, a lone surrogate and a NUL escape in its JSON: each rejected
    with a reason in the user's words (they named syncpipe's stage table, or said "invalid
    input syntax for type json"), and the good page loads."""
    key = "11111111-1111-4111-8111-11111111111{}"
    lines = [
        PAGE_HEADER,
        f"{key.format(1)},t1,https://a.example.com,",
        f'{key.format(2)},t1,https://a.example.com,"[{{""name"": ""A \\ud800""}}]"',
        f'{key.format(3)},t1,https://a.example.com,"[{{""name"": ""B \\u0000""}}]"',
        f'{key.format(4)},t1,https://a.example.com,"[{{""name"": ""C D""}}]"',
    ]
    path = write(tmp_path / "raw_company_info.csv", lines)
    f = invoke(["load", str(path), "--json"], code=1, dsn=deployed_db).json()["files"][0]
    assert (f["inserted"], f["rejected"]) == (1, 3)
    rejects = _rejects(f["reject_file"])
    assert rejects[2]["reason"] == "team_members is empty, and the table needs a value"
    assert rejects[3]["reason"].startswith("is not JSON PostgreSQL can store")
    assert rejects[4]["reason"].startswith("is not JSON PostgreSQL can store")
    assert not any("_syncpipe" in r["reason"] for r in rejects.values())
