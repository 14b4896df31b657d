"""Splink (DuckDB) on the records syncpipe merges, scored the way syncpipe is scored.

Usage: python bench/peer_splink.py DATA_DIR [--threshold 0.95] [--max-pairs 1e7]
  DATA_DIR: a generator folder (``python -m syncpipe.synth``): new_agents.csv,
  raw_company_info.csv, truth.csv. Splink is not a dependency of syncpipe: the first run
  installs the latest Splink from PyPI into its own venv (bench/out/splink-venv) and runs it
  there, in a child process.

The child reads both CSV sources into one table of records (feed rows and team-page members,
each with its name, e-mails, phones and team), cleans them the way Splink's tutorials do
(lower-cased, accents and punctuation removed, "Last, First" turned round, phones to their last
ten digits), then follows Splink's documented workflow: a dedupe model with comparisons for the
first name and surname (``ForenameSurnameComparison``: Jaro-Winkler levels, swapped names,
term-frequency adjusted), the record's first e-mail and first phone (``ExactMatch``,
term-frequency adjusted: an office line or info@ mailbox shared by a team weighs little) and
team (``ExactMatch``); blocking on team, on each e-mail and on each phone (arrays exploded) and
on first name + surname; the prior from exact e-mail matches; u by random sampling; m by EM
twice (blocked on team, then on first name + surname); predict; connected components at the
threshold. (Comparing the e-mail and phone arrays with ``ArrayIntersectAtSizes`` instead, which
cannot be term-frequency adjusted, gave precision 0.78 on 5,000 persons: shared office lines
glue teams together; this model gives 0.997.)

The parent measures the child's wall time and peak memory (RSS of the process, DuckDB
included: the kernel's high-water mark, ``wait4``; and the peak of PSS
sampled from /proc every 0.2 s) and scores the clusters against truth.csv with syncpipe's own
pairwise scorer (``bench/_common.py`` -> ``syncpipe.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / "out" / "splink-venv"


# -- the child: runs in the Splink venv ------------------------------------------------------


def _records(data: Path):  # runs in the Splink venv
    """Both sources as one list of records, cleaned the usual way."""
    import csv
    import re
    import unicodedata

    punct = re.compile(r"[^a-z' -]+")
    suffixes = {"jr", "sr", "ii", "iii", "iv"}

    def name_parts(raw: object) -> tuple[str | None, str | None]:
        if not isinstance(raw, str) or not raw.strip():
            return None, None
        text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
        if "," in text:
            last, _, first = text.partition(",")
            text = f"{first} {last}"
        tokens = [t for t in punct.sub(" ", text).replace("'", "").split() if t]
        if not tokens:
            return None, None
        # middle initials and suffixes ("Jr.") are neither the first name nor the surname
        tokens = tokens[:1] + [t for t in tokens[1:] if t not in suffixes and len(t) > 1]
        return tokens[0], (tokens[-1] if len(tokens) > 1 else None)

    def as_list(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
        return []

    def emails(values: list[str]) -> list[str]:
        out = []
        for v in values:
            v = v.strip().lower().removeprefix("mailto:")
            local, at, domain = v.partition("@")
            if at and local and "." in domain and v not in out:
                out.append(v)
        return out

    def phones(values: list[str]) -> list[str]:
        out = []
        for v in values:
            v = re.split(r"x|ext", v.lower())[0]
            digits = re.sub(r"\D", "", v)
            if len(digits) == 11 and digits[0] == "1":
                digits = digits[1:]
            if len(digits) == 10 and digits not in out:
                out.append(digits)
        return out

    rows = []
    csv.field_size_limit(1 << 30)
    with (data / "new_agents.csv").open(newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            first, last = name_parts(r["full_name"])
            em = emails(as_list(json.loads(r["email_clean"] or "[]")))
            ph = phones(as_list(json.loads(r["phone_digits"] or "[]")))
            rows.append(
                ("new_agents", r["supabase_uuid"], first, last, em, ph, r["team_id"] or None)
            )
    with (data / "raw_company_info.csv").open(newline="", encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            members = json.loads(r["team_members"] or "[]")
            for pos, m in enumerate(members if isinstance(members, list) else [], start=1):
                if not isinstance(m, dict):
                    continue
                first, last = name_parts(m.get("name", m.get("full_name")))
                em = emails(as_list(m.get("email")) + as_list(m.get("emails")))
                ph = phones(as_list(m.get("phone")) + as_list(m.get("phones")))
                if first is None and not em and not ph:
                    continue
                key = f"{r['research_uuid']}#{pos}"
                rows.append(("company_member", key, first, last, em, ph, r["team_id"] or None))
    return rows


def prepare(data: Path, out: Path) -> None:
    """The cleaned records as one Parquet file (a process of its own: its memory is not
    Splink's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    rows = _records(data)
    cols = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "unique_id": [f"{s}|{k}" for s, k in zip(cols[0], cols[1], strict=True)],
            "first_name": pa.array(cols[2], type=pa.string()),
            "surname": pa.array(cols[3], type=pa.string()),
            "emails": pa.array(cols[4], type=pa.list_(pa.string())),
            "phones": pa.array(cols[5], type=pa.list_(pa.string())),
            "team_id": pa.array(cols[6], type=pa.string()),
        }
    )
    pq.write_table(table, out)
    print(json.dumps({"prepare": time.perf_counter() - t0, "records": len(rows)}))


def worker(records: Path, out: Path, threshold: float, max_pairs: float) -> None:
    import duckdb
    import splink
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    times: dict[str, float] = {}
    t1 = time.perf_counter()
    # DuckDB spills beyond its memory limit (80% of RAM) into temp_directory (default: ./.tmp)
    con = duckdb.connect(config={"temp_directory": str(out.parent / "duckdb-spill")})
    # Empty arrays are "no value" for Splink's null level.
    con.execute(
        "CREATE TABLE records AS SELECT unique_id, first_name, surname, "
        "CASE WHEN len(emails) > 0 THEN emails END AS emails, "
        "CASE WHEN len(phones) > 0 THEN phones END AS phones, "
        "emails[1] AS email, phones[1] AS phone, team_id, "
        "first_name || ' ' || surname AS first_name_surname FROM read_parquet(?)",
        [str(records)],
    )
    times["read"] = time.perf_counter() - t1

    t1 = time.perf_counter()
    db_api = DuckDBAPI(connection=con)
    df = db_api.register("records")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name", "surname", forename_surname_concat_col_name="first_name_surname"
            ).configure(term_frequency_adjustments=True),
            cl.ExactMatch("email").configure(term_frequency_adjustments=True),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.ExactMatch("team_id"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("team_id"),
            block_on("emails", arrays_to_explode=["emails"]),
            block_on("phones", arrays_to_explode=["phones"]),
            block_on("first_name", "surname"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(df, settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("emails", arrays_to_explode=["emails"])], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=1)
    times["train_u"] = time.perf_counter() - t1 - times["read"]
    t2 = time.perf_counter()
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("team_id"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname")
    )
    times["train_em"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    times["predict"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    times["cluster"] = time.perf_counter() - t4
    pairs = con.execute(f"SELECT count(*) FROM {predictions.physical_name}").fetchone()[0]
    con.execute(
        f"COPY (SELECT unique_id, cluster_id FROM {clusters.physical_name}) TO '{out}' "
        "(FORMAT csv, HEADER)"
    )
    times["total"] = time.perf_counter() - t1
    print(json.dumps({"times": times, "pairs": pairs, "splink": splink.__version__}))


# -- the parent: runs anywhere -----------------------------------------------------------------


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").exists():
        print(f"installing the latest Splink into {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", "splink"],
            check=True,
        )
        (VENV / ".installed").touch()
    return python


def run(data: Path, threshold: float = 0.95, max_pairs: float = 1e7) -> dict[str, object]:
    """Splink on ``data`` in its own process: times, peak memory, pairwise quality."""
    sys.path.insert(0, str(ROOT))
    from _common import MemorySampler, pairwise_quality

    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="syncpipe-splink-") as tmp:
        records = Path(tmp) / "records.parquet"
        out = Path(tmp) / "clusters.csv"
        t0 = time.perf_counter()
        prep = subprocess.run(
            [str(python), __file__, "--prepare", str(data), str(records)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        prepare_wall = time.perf_counter() - t0
        cmd = [str(python), __file__, "--worker", str(records), str(out)]
        cmd += ["--threshold", str(threshold), "--max-pairs", str(max_pairs)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        with MemorySampler(lambda: [proc.pid]) as memory:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout = proc.stdout.read() if proc.stdout else ""
        if proc.returncode != 0:
            raise RuntimeError(f"Splink worker exited {proc.returncode}")
        report = json.loads(stdout.strip().splitlines()[-1])
        import csv

        ids: dict[str, int] = {}
        assignment: dict[tuple[str, str], int] = {}
        with out.open(newline="") as fh:
            for row in csv.DictReader(fh):
                source, _, key = row["unique_id"].partition("|")
                assignment[(source, key)] = ids.setdefault(row["cluster_id"], len(ids))
    quality = pairwise_quality(assignment, data / "truth.csv")
    return {
        **report,
        "prepare_wall": prepare_wall,
        "prepare": json.loads(prep.stdout.strip().splitlines()[-1]),
        "wall": wall,
        "peak_rss_mb": usage.ru_maxrss * 1024 / 1e6,  # KiB -> MB, as the PSS figures
        "peak_pss_mb": memory.peak_pss / 1e6,
        "records": len(assignment),
        "clusters": len(ids),
        **quality,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--max-pairs", type=float, default=1e7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.data, args.out)
        return 0
    if args.worker:
        worker(args.data, args.out, args.threshold, args.max_pairs)
        return 0
    r = run(args.data, args.threshold, args.max_pairs)
    times = r["times"]
    assert isinstance(times, dict)
    print(f"Splink {r['splink']} (DuckDB), {r['records']:,} records -> {r['clusters']:,} clusters")
    print(f"  cleaning the CSVs into Parquet (a process of its own): {r['prepare_wall']:.1f} s")
    print(
        f"  Splink wall (process start to clusters written): {r['wall']:.1f} s; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    )
    print(
        f"  peak memory: RSS {r['peak_rss_mb']:,.0f} MB (high-water mark), PSS sampled "
        f"{r['peak_pss_mb']:,.0f} MB; pairs scored >= 0.5: {r['pairs']:,}"
    )
    print(f"  pairwise precision {r['precision']:.4f}, recall {r['recall']:.4f}, F1 {r['f1']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
