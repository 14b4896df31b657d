"""Score the master table against the generator's ground truth (``truth.csv``).

Pairwise metrics, the usual ones for entity resolution: two source records form a *true pair*
when the truth says they are the same person and a *predicted pair* when they sit under the same
agent. Precision is the share of predicted pairs that are true, recall the share of true pairs
that were found. "After review" accepts every open review pair whose two agents are, by
majority, the same person, which is what a careful reviewer would do.

Used by the quality tests and ``bench/quality.py``; it reads aggregates from the database and
keeps one small tuple per source record in memory.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

_SOURCES_SQL = """
SELECT s.source,
       CASE WHEN s.source = 'company_member'
            THEN m.research_uuid::text || '#' || m.member_position
            ELSE s.source_id END AS source_key,
       a.agent_id
FROM public.unified_agent_sources s
JOIN public.new_unified_agents a ON a.agent_id = s.agent_id
LEFT JOIN public.unified_company_member m
       ON s.source = 'company_member' AND m.id::text = s.source_id
"""

# In the order ``syncpipe review`` shows them: strongest first.
_OPEN_REVIEW_SQL = """
SELECT agent_id, candidate_agent_id FROM public.merge_review_queue WHERE status = 'open'
ORDER BY confidence DESC, (evidence ->> 'weight')::numeric DESC NULLS LAST, id
"""


@dataclass(frozen=True)
class Quality:
    records: int
    records_unknown: int
    agents: int
    persons: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float
    f1: float
    review_items: int
    review_items_right: int
    review_per_1000_records: float
    review_first_half_right: float
    recall_after_review: float
    precision_after_review: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def read_truth(path: Path) -> dict[tuple[str, str], int]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            (row["source"], row["source_key"]): int(row["person_id"])
            for row in csv.DictReader(handle)
        }


def _score(
    assignment: dict[tuple[str, str], int], truth: dict[tuple[str, str], int]
) -> tuple[int, int, int]:
    """(true pairs, predicted pairs, correct pairs) over records known to both sides."""
    by_agent: Counter[int] = Counter()
    by_person: Counter[int] = Counter()
    by_both: Counter[tuple[int, int]] = Counter()
    for key, agent in assignment.items():
        person = truth[key]
        by_agent[agent] += 1
        by_person[person] += 1
        by_both[(agent, person)] += 1
    return (
        sum(_pairs(n) for n in by_person.values()),
        sum(_pairs(n) for n in by_agent.values()),
        sum(_pairs(n) for n in by_both.values()),
    )


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def read_assignment(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """Each source record's agent, keyed as truth.csv keys it ((source, source_key))."""
    with conn.cursor() as cur:
        return {(source, key): agent for source, key, agent in cur.execute(_SOURCES_SQL)}


def record_pairs(
    assignment: dict[tuple[str, str], int],
) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """The pairs of records that sit under one agent (each pair in key order)."""
    groups: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for key, agent in assignment.items():
        groups[agent].append(key)
    pairs: set[tuple[tuple[str, str], tuple[str, str]]] = set()
    for keys in groups.values():
        keys.sort()
        pairs.update((a, b) for i, a in enumerate(keys) for b in keys[i + 1 :])
    return pairs


def evaluate(conn: psycopg.Connection[Any], truth_path: Path) -> Quality:
    truth = read_truth(truth_path)
    everything = read_assignment(conn)
    assignment = {key: agent for key, agent in everything.items() if key in truth}
    unknown = len(everything) - len(assignment)
    review = conn.execute(_OPEN_REVIEW_SQL).fetchall()

    true_pairs, predicted, correct = _score(assignment, truth)

    # The person most of an agent's records belong to.
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    for key, agent in assignment.items():
        votes[agent][truth[key]] += 1
    majority = {agent: counts.most_common(1)[0][0] for agent, counts in votes.items()}

    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    right = 0
    right_first_half = 0
    for nth, (a, b) in enumerate(review):
        if a in majority and majority.get(a) == majority.get(b):
            right += 1
            right_first_half += nth < (len(review) + 1) // 2
            parent[find(a)] = find(b)
    reviewed = {key: find(agent) for key, agent in assignment.items()}
    _, predicted_after, correct_after = _score(reviewed, truth)

    precision = _ratio(correct, predicted)
    recall = _ratio(correct, true_pairs)
    return Quality(
        records=len(assignment),
        records_unknown=unknown,
        agents=len(set(assignment.values())),
        persons=len(set(truth[k] for k in assignment)),
        true_pairs=true_pairs,
        predicted_pairs=predicted,
        correct_pairs=correct,
        precision=round(precision, 5),
        recall=round(recall, 5),
        f1=round(2 * precision * recall / (precision + recall) if precision + recall else 0.0, 5),
        review_items=len(review),
        review_items_right=right,
        review_per_1000_records=round(1000 * len(review) / len(assignment), 2)
        if assignment
        else 0.0,
        # Ranking: the share of the queue's true pairs in its first half (strongest first).
        review_first_half_right=round(_ratio(right_first_half, right), 4),
        recall_after_review=round(_ratio(correct_after, true_pairs), 5),
        precision_after_review=round(_ratio(correct_after, predicted_after), 5),
    )
