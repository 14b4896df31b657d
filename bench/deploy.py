"""Benchmark deploy: from scratch, no-op redeploy and `syncpipe --help`, medians of several runs.

Usage: python bench/deploy.py [RUNS]   (SYNCPIPE_BENCH_DATABASE_URL: admin DSN, default local)
Targets (issue 2): full deploy <= 2 s, no-op redeploy <= 0.5 s, --help <= 0.5 s.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import median_of, scratch_database, syncpipe


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    os.chdir(tempfile.mkdtemp(prefix="syncpipe-bench-"))

    def scratch() -> float:
        with scratch_database() as dsn:
            return syncpipe(["deploy"], dsn)

    def scratch_service() -> float:
        from syncpipe.db.database import Database
        from syncpipe.services.deploy import DeployService
        from syncpipe.settings import Settings

        with scratch_database() as dsn:
            settings = Settings(_env_file=None, database_url=dsn)  # type: ignore[call-arg]
            with Database(settings) as db:
                db.open()
                t0 = time.perf_counter()
                DeployService(settings, db).run()
                return time.perf_counter() - t0

    full, full_s = median_of(runs, scratch)
    service, _ = median_of(runs, scratch_service)
    with scratch_database() as dsn:
        syncpipe(["deploy"], dsn)
        noop, noop_s = median_of(runs, lambda: syncpipe(["deploy", "--no-verify"], dsn))
        noop_verify, _ = median_of(runs, lambda: syncpipe(["deploy"], dsn))
        verify, _ = median_of(runs, lambda: syncpipe(["verify"], dsn))
    help_, help_s = median_of(runs, lambda: syncpipe(["--help"], None))

    print(f"runs per figure: {runs} (median)")
    print(f"full deploy from scratch, CLI wall incl. verify : {full:.3f} s   target <= 2 s")
    print(f"  deploy service only (files + ledger + snapshot): {service:.3f} s")
    print(f"no-op redeploy, CLI wall (--no-verify)          : {noop:.3f} s   target <= 0.5 s")
    print(f"no-op redeploy, CLI wall incl. verify           : {noop_verify:.3f} s")
    print(f"verify, CLI wall                                : {verify:.3f} s")
    print(f"syncpipe --help, CLI wall                       : {help_:.3f} s   target <= 0.5 s")
    print("samples:", {"full": full_s, "noop": noop_s, "help": help_s})


if __name__ == "__main__":
    main()
