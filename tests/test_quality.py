"""Merge quality on labelled generator data (10,000 persons), measured with the ground truth.

Pairwise precision of automatic merges >= 0.995, recall >= 0.85; after a reviewer accepts the
review pairs that are right (through the real `syncpipe review accept`), recall >= 0.95.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import psycopg
import pytest

from syncpipe.evaluate import _SOURCES_SQL, evaluate, read_truth
from syncpipe.synth import Config, Generator
from tests.helpers import Invoke, fetch


@pytest.fixture(scope="module")
def synth_10k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    # A seed of its own, not the one used while developing the rules.
    Generator(Config(persons=10_000, seed=20261124)).run(out)
    return out


def _right_review_items(dsn: str, truth_path: Path) -> list[int]:
    """Open review items whose two agents are, by majority of their records, one person."""
    truth = read_truth(truth_path)
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    with psycopg.connect(dsn) as conn:
        for source, key, agent in conn.execute(_SOURCES_SQL):
            if (source, key) in truth:
                votes[agent][truth[(source, key)]] += 1
    majority = {agent: c.most_common(1)[0][0] for agent, c in votes.items()}
    items = fetch(
        dsn,
        "SELECT id, agent_id, candidate_agent_id FROM merge_review_queue WHERE status = 'open'",
    )
    return [i for i, a, b in items if a in majority and majority[a] == majority.get(b)]


def test_quality_on_10k_labelled_persons(invoke: Invoke, deployed_db: str, synth_10k: Path) -> None:
    invoke(["load", str(synth_10k)], dsn=deployed_db)
    invoke(["merge"], dsn=deployed_db)
    with psycopg.connect(deployed_db) as conn:
        q = evaluate(conn, synth_10k / "truth.csv")
    assert q.records_unknown == 0
    assert q.records > 14_000
    assert q.precision >= 0.995, q
    assert q.recall >= 0.85, q
    assert q.review_items > 0

    right = _right_review_items(deployed_db, synth_10k / "truth.csv")
    assert len(right) >= 0.6 * q.review_items, (len(right), q.review_items)
    invoke(["review", "accept", *map(str, right), "--by", "quality-test"], dsn=deployed_db)
    with psycopg.connect(deployed_db) as conn:
        after = evaluate(conn, synth_10k / "truth.csv")
    assert after.recall >= 0.95, after
    assert after.precision >= 0.995, after
    # A second run with nothing new changes nothing.
    again = invoke(["merge", "--json"], dsn=deployed_db).json()
    assert again["merge"]["pending"] == 0 and again["pipeline"]["inserted"] == 0
