"""Synthetic agent data with ground truth: ``python -m syncpipe.synth --persons N --out DIR``.

Deterministic by seed. N persons work in teams of about a dozen; each person may appear in the
new-agents feed, on their team's research page, or both, with the noise real sources have:
nicknames, typos, "Last, First", missing surnames, accents, messy phone formats, e-mail case
and spaces, extensions, invalid values, garbage inside team_members. Teams share an office line
and an info@ mailbox; some agents moved teams; namesakes live in different teams; fathers and
sons ("Jr.") work together. ``truth.csv`` says which source records are the same person and
``cases.csv`` lists where each hard case was planted.

Everything is streamed team by team, so a million persons need little memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# A general list of common English given names with their usual nicknames.
NICKNAMES: dict[str, list[str]] = {
    "robert": ["bob", "rob", "bobby"],
    "william": ["bill", "will", "billy"],
    "richard": ["rick", "dick", "rich"],
    "james": ["jim", "jimmy", "jamie"],
    "john": ["jack", "johnny"],
    "michael": ["mike", "mikey"],
    "thomas": ["tom", "tommy"],
    "joseph": ["joe", "joey"],
    "charles": ["charlie", "chuck"],
    "christopher": ["chris"],
    "daniel": ["dan", "danny"],
    "matthew": ["matt"],
    "anthony": ["tony"],
    "steven": ["steve"],
    "andrew": ["andy", "drew"],
    "joshua": ["josh"],
    "kenneth": ["ken", "kenny"],
    "edward": ["ed", "eddie", "ted"],
    "ronald": ["ron"],
    "timothy": ["tim"],
    "jonathan": ["jon"],
    "nicholas": ["nick"],
    "benjamin": ["ben"],
    "samuel": ["sam"],
    "gregory": ["greg"],
    "alexander": ["alex"],
    "patrick": ["pat"],
    "raymond": ["ray"],
    "gerald": ["jerry"],
    "lawrence": ["larry"],
    "jeffrey": ["jeff"],
    "elizabeth": ["liz", "beth", "betty", "lizzie"],
    "jennifer": ["jen", "jenny"],
    "patricia": ["pat", "patty", "trish"],
    "margaret": ["maggie", "peggy", "meg"],
    "katherine": ["kate", "kathy", "katie"],
    "susan": ["sue", "susie"],
    "deborah": ["deb", "debbie"],
    "rebecca": ["becky", "becca"],
    "kimberly": ["kim"],
    "jessica": ["jess"],
    "victoria": ["vicky", "tori"],
    "christina": ["tina", "chris"],
    "samantha": ["sam"],
    "alexandra": ["alex", "lexi"],
    "abigail": ["abby"],
    "barbara": ["barb"],
    "cynthia": ["cindy"],
    "pamela": ["pam"],
    "judith": ["judy"],
    "theresa": ["terry", "tess"],
    "dorothy": ["dot", "dottie"],
    "nancy": ["nan"],
    "francisco": ["paco", "pancho"],
    "jose": ["pepe"],
    "alejandro": ["alex"],
}
FIRST_NAMES = sorted(
    set(NICKNAMES)
    | {
        "mary",
        "linda",
        "sarah",
        "karen",
        "lisa",
        "emily",
        "ashley",
        "amanda",
        "melissa",
        "stephanie",
        "laura",
        "amy",
        "angela",
        "helen",
        "anna",
        "brenda",
        "emma",
        "olivia",
        "sophia",
        "isabella",
        "mia",
        "charlotte",
        "amelia",
        "harper",
        "evelyn",
        "ava",
        "david",
        "mark",
        "paul",
        "donald",
        "george",
        "kevin",
        "brian",
        "ryan",
        "jacob",
        "gary",
        "eric",
        "stephen",
        "larry",
        "justin",
        "scott",
        "brandon",
        "frank",
        "jason",
        "noah",
        "liam",
        "ethan",
        "lucas",
        "mason",
        "logan",
        "aiden",
        "carter",
        "wyatt",
        "maria",
        "carmen",
        "lucia",
        "sofia",
        "valentina",
        "camila",
        "diego",
        "carlos",
        "luis",
        "miguel",
        "juan",
        "pedro",
        "andres",
        "mateo",
        "santiago",
        "priya",
        "anil",
        "ravi",
        "wei",
        "li",
        "mei",
        "chen",
        "hiroshi",
        "yuki",
        "kenji",
        "min-jun",
        "ji-woo",
        "omar",
        "fatima",
        "aisha",
        "ahmed",
        "yusuf",
        "ivan",
        "olga",
        "dmitri",
        "natalia",
        "sean",
        "siobhan",
        "niamh",
        "connor",
        "aoife",
        "zoe",
        "chloe",
        "grace",
        "lily",
        "nora",
    }
)
ACCENTED = {
    "jose": "José",
    "zoe": "Zoë",
    "andres": "Andrés",
    "sofia": "Sofía",
    "lucia": "Lucía",
    "chloe": "Chloé",
    "niamh": "Níamh",
    "natalia": "Natália",
}
LAST_NAMES = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "gomez",
    "phillips",
    "evans",
    "turner",
    "diaz",
    "parker",
    "cruz",
    "edwards",
    "collins",
    "reyes",
    "stewart",
    "morris",
    "morales",
    "murphy",
    "cook",
    "rogers",
    "gutierrez",
    "ortiz",
    "morgan",
    "cooper",
    "peterson",
    "bailey",
    "reed",
    "kelly",
    "howard",
    "ramos",
    "kim",
    "cox",
    "ward",
    "richardson",
    "watson",
    "brooks",
    "chavez",
    "wood",
    "james",
    "bennett",
    "gray",
    "mendoza",
    "ruiz",
    "hughes",
    "price",
    "alvarez",
    "castillo",
    "sanders",
    "patel",
    "myers",
    "long",
    "ross",
    "foster",
    "jimenez",
    "powell",
    "jenkins",
    "perry",
    "russell",
    "sullivan",
    "bell",
    "coleman",
    "butler",
    "henderson",
    "barnes",
    "gonzales",
    "fisher",
    "vasquez",
    "simmons",
    "romero",
    "jordan",
    "patterson",
    "alexander",
    "hamilton",
    "graham",
    "reynolds",
    "griffin",
    "wallace",
    "moreno",
    "west",
    "cole",
    "hayes",
    "bryant",
    "herrera",
    "gibson",
    "ellis",
    "tran",
    "medina",
    "aguilar",
    "stevens",
    "murray",
    "ford",
    "castro",
    "marshall",
    "owens",
    "harrison",
    "fernandez",
    "mcdonald",
    "woods",
    "washington",
    "kennedy",
    "wells",
    "vargas",
    "henry",
    "chen",
    "freeman",
    "webb",
    "tucker",
    "guzman",
    "burns",
    "crawford",
    "olson",
    "simpson",
    "porter",
    "hunter",
    "gordon",
    "mendez",
    "silva",
    "shaw",
    "snyder",
    "mason",
    "dixon",
    "munoz",
    "hunt",
    "hicks",
    "holmes",
    "palmer",
    "wagner",
    "black",
    "robertson",
    "boyd",
    "rose",
    "stone",
    "salazar",
    "fox",
    "warren",
    "mills",
    "meyer",
    "rice",
    "schmidt",
    "garza",
    "daniels",
    "ferguson",
    "nichols",
    "stephens",
    "soto",
    "weaver",
    "ryan",
    "gardner",
    "payne",
    "grant",
    "dunn",
    "kelley",
    "spencer",
    "hawkins",
    "arnold",
    "pierce",
    "vazquez",
    "hansen",
    "peters",
    "santos",
    "hart",
    "bradley",
    "knight",
    "elliott",
    "cunningham",
    "duncan",
    "armstrong",
    "hudson",
    "carroll",
    "lane",
    "riley",
    "andrews",
    "alvarado",
    "ray",
    "delgado",
    "berry",
    "perkins",
    "hoffman",
    "johnston",
    "matthews",
    "pena",
    "richards",
    "contreras",
    "willis",
    "carpenter",
    "lawrence",
    "sandoval",
    "o'brien",
    "o'connor",
    "mcallister",
    "van der berg",
    "de la cruz",
    "müller",
    "schäfer",
    "nuñez",
    "peña",
    "garcía",
    "lópez",
    "nguyễn",
    "lefèvre",
    "kowalski",
    "novak",
    "yamamoto",
    "tanaka",
    "sato",
    "park",
    "choi",
    "singh",
    "kumar",
    "shah",
    "cohen",
    "levy",
]
SUFFIXES = ["Jr.", "Sr.", "II", "III"]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com"]
AREA_CODES = [
    201,
    202,
    203,
    205,
    206,
    207,
    208,
    209,
    210,
    212,
    213,
    214,
    215,
    216,
    217,
    218,
    219,
    224,
    225,
    228,
    229,
    231,
    234,
    239,
    240,
    248,
    251,
    252,
    253,
    254,
    256,
    260,
    262,
    267,
    269,
    270,
    272,
    276,
    281,
    301,
    302,
    303,
    304,
    305,
    307,
    308,
    309,
    310,
    312,
    313,
    314,
    315,
    316,
    317,
    318,
    319,
    320,
    321,
    323,
    325,
    330,
    331,
    334,
    336,
    337,
    339,
    346,
    347,
    351,
    352,
    360,
    361,
    385,
    386,
    401,
    402,
    404,
    405,
    406,
    407,
    408,
    409,
    410,
    412,
    413,
    414,
    415,
    417,
    419,
    423,
    424,
    425,
    430,
    432,
    434,
    435,
    440,
    442,
    443,
    469,
    470,
    475,
    478,
    479,
    480,
    484,
    501,
    502,
    503,
    504,
    505,
    507,
    508,
    509,
    510,
    512,
    513,
    515,
    516,
    517,
    518,
    520,
    530,
    531,
    534,
    539,
    540,
    541,
    551,
    559,
    561,
    562,
    563,
    567,
    570,
    571,
    573,
    574,
    575,
    580,
    585,
    586,
    601,
    602,
    603,
    605,
    606,
    607,
    608,
    609,
    610,
    612,
    614,
    615,
    616,
    617,
    618,
    619,
    620,
    623,
    626,
    628,
    629,
    630,
    631,
    636,
    641,
    646,
    650,
    651,
    657,
    660,
    661,
    662,
    667,
    669,
    678,
    681,
    682,
    701,
    702,
    703,
    704,
    706,
    707,
    708,
    712,
    713,
    714,
    715,
    716,
    717,
    718,
    719,
    720,
    724,
    725,
    727,
    731,
    732,
    734,
    737,
    740,
    747,
    754,
    757,
    760,
    762,
    763,
    765,
    769,
    770,
    772,
    773,
    774,
    775,
    779,
    781,
    785,
    786,
    801,
    802,
    803,
    804,
    805,
    806,
    808,
    810,
    812,
    813,
    814,
    815,
    816,
    817,
    818,
    828,
    830,
    831,
    832,
    843,
    845,
    847,
    848,
    850,
    856,
    857,
    858,
    859,
    860,
    862,
    863,
    864,
    865,
    870,
    872,
    878,
    901,
    903,
    904,
    906,
    907,
    908,
    909,
    910,
    912,
    913,
    914,
    915,
    916,
    917,
    918,
    919,
    920,
    925,
    928,
    929,
    931,
    936,
    937,
    938,
    940,
    941,
    947,
    949,
    951,
    952,
    954,
    956,
    970,
    971,
    972,
    973,
    978,
    979,
    980,
    984,
    985,
    989,
]
TITLES = [
    "Realtor",
    "Broker",
    "Associate Broker",
    "Team Lead",
    "Buyer's Agent",
    "Listing Specialist",
    "Transaction Coordinator",
    "REALTOR®",
    "Agent",
]
TEAM_WORDS = [
    "Home",
    "Realty",
    "Group",
    "Partners",
    "Properties",
    "Collective",
    "Advisors",
    "Estates",
    "Living",
    "Key",
    "Harbor",
    "Summit",
    "Oak",
    "Pine",
    "Metro",
    "Coastal",
]
CASES = (
    "email",
    "phone",
    "name_team",
    "fuzzy_nickname",
    "fuzzy_typo",
    "last_first",
    "missing_surname",
    "office_line",
    "info_mailbox",
    "mover",
    "namesakes",
    "junior",
    "garbage_member",
    "messy_phone",
    "invalid_email",
    "no_contact",
)


@dataclass
class Person:
    """Someone who really exists (the ground truth)."""

    pid: int
    first: str
    last: str
    middle: str | None
    suffix: str | None
    email: str
    work_email: str | None
    mobile: str  # 10 digits
    team: int


@dataclass
class Config:
    """Knobs of the generator (shares are probabilities per person or per record)."""

    persons: int = 1000
    seed: int = 42
    team_size: int = 13
    agent_share: float = 0.75
    member_share: float = 0.75
    mover_share: float = 0.03
    nickname_share: float = 0.08
    typo_share: float = 0.04
    last_first_share: float = 0.04
    missing_surname_share: float = 0.02
    no_email_share: float = 0.12
    office_line_share: float = 0.15
    info_mailbox_share: float = 0.06
    garbage_share: float = 0.05
    namesake_share: float = 0.01
    junior_share: float = 0.003


@dataclass
class Stats:
    """What was written."""

    persons: int = 0
    teams: int = 0
    agents: int = 0
    members: int = 0
    cases: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CASES})


def _title(word: str) -> str:
    out = []
    for part in word.split(" "):
        if part.startswith(("o'", "mc")) and len(part) > 2:
            cut = 2
            out.append(part[:cut].capitalize() + part[cut:].capitalize())
        elif part in ("van", "der", "de", "la"):
            out.append(part)
        else:
            out.append("-".join(p.capitalize() for p in part.split("-")))
    return " ".join(out)


def _ascii(word: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _local(word: str) -> str:
    return "".join(c for c in _ascii(word).lower() if c.isalnum())


class Generator:
    """Writes new_agents.csv, raw_company_info.csv, truth.csv and cases.csv."""

    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.stats = Stats()
        self._uuid_rng = random.Random(config.seed ^ 0x5EED)
        self._pid = 0
        # (first, last, team) of persons whose name a later person in another team reuses.
        self._namesake_pool: list[tuple[str, str, int]] = []
        # Office lines already given to a team.
        self._offices: set[str] = set()

    # -- identities ------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._uuid_rng.getrandbits(128), version=4))

    def _mobile(self, pid: int) -> str:
        area = AREA_CODES[pid % len(AREA_CODES)]
        serial = pid // len(AREA_CODES)
        exchange = 200 + (serial * 7 + 31) % 800  # never 0xx/1xx
        line = (serial * 7919 + pid) % 10000
        return f"{area}{exchange:03d}{line:04d}"

    def _office(self, team: int) -> str:
        """The team's office line, its own at any size (called once per team, in order)."""
        area = AREA_CODES[(team * 31) % len(AREA_CODES)]
        number = (
            f"{area}555{(team * 37) % 10000:04d}"
            if team % 2
            else f"{area}{200 + team % 700:03d}0100"
        )
        # (the pattern above repeats past about 100,000 teams, 1.3M persons: two teams would
        # share a line, and the data would change shape with its size)
        step = 0
        while number in self._offices:
            step += 1
            area = AREA_CODES[(team * 31 + step) % len(AREA_CODES)]
            number = f"{area}555{(team * 37 + step) % 10000:04d}"
        self._offices.add(number)
        return number

    def _person(self, team: int, name: tuple[str, str] | None = None) -> Person:
        rng = self.rng
        self._pid += 1
        pid = self._pid
        first, last = name or (rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
        middle = rng.choice("ABCDEFGHJKLMNPRSTW") if rng.random() < 0.15 else None
        tag = format(pid, "x")
        style = rng.random()
        f, la = _local(first), _local(last)
        if style < 0.35:
            local = f"{f}.{la}{tag}"
        elif style < 0.6:
            local = f"{f[0]}{la}{tag}"
        elif style < 0.8:
            local = f"{f}{la[:3]}{tag}"
        else:
            local = f"{la}.{f}.{tag}"
        email = f"{local}@{FREE_MAIL[pid % len(FREE_MAIL)]}"
        work = f"{f}.{la}.{tag}@{self._domain(team)}" if rng.random() < 0.3 else None
        return Person(pid, first, last, middle, None, email, work, self._mobile(pid), team)

    def _domain(self, team: int) -> str:
        word = TEAM_WORDS[team % len(TEAM_WORDS)].lower()
        return f"{word}{team}realty.com"

    # -- name forms ------------------------------------------------------------------------
    def _display(self, p: Person, *, accents: bool = True) -> str:
        first = ACCENTED.get(p.first, _title(p.first)) if accents else _title(p.first)
        parts = [first]
        if p.middle:
            parts.append(p.middle + ".")
        parts.append(_title(p.last))
        if p.suffix:
            parts.append(p.suffix)
        return " ".join(parts)

    def _typo(self, word: str) -> str:
        rng = self.rng
        if len(word) < 4:
            return word + word[-1]
        i = rng.randrange(1, len(word) - 1)
        kind = rng.random()
        if kind < 0.4:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap
        if kind < 0.7:
            return word[:i] + word[i + 1 :]  # drop
        return word[:i] + word[i] + word[i:]  # double

    def _member_name(self, p: Person) -> tuple[str, str | None]:
        """A name as a team page writes it, and the hard case it plants (if any)."""
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        edges = [
            cfg.nickname_share,
            cfg.typo_share,
            cfg.last_first_share,
            cfg.missing_surname_share,
        ]
        suffix = f" {p.suffix}" if p.suffix else ""
        if r < edges[0]:
            if p.first in NICKNAMES:
                nick = rng.choice(NICKNAMES[p.first])
                return f"{_title(nick)} {_title(p.last)}{suffix}", "fuzzy_nickname"
            return f"{_title(self._typo(p.first))} {_title(p.last)}{suffix}", "fuzzy_typo"
        if r < sum(edges[:2]):
            return f"{_title(p.first)} {_title(self._typo(p.last))}{suffix}", "fuzzy_typo"
        if r < sum(edges[:3]):
            return f"{_title(p.last)}, {_title(p.first)}", "last_first"
        if r < sum(edges):
            return _title(p.first), "missing_surname"
        name = self._display(p, accents=rng.random() < 0.5)
        style = rng.random()
        if style < 0.05:
            name = name.upper()
        elif style < 0.08:
            name = "  " + name.lower() + " "
        return name, None

    # -- contact forms ---------------------------------------------------------------------
    def _messy_phone(self, digits: str) -> str:
        a, b, c = digits[:3], digits[3:6], digits[6:]
        forms = [
            f"({a}) {b}-{c}",
            f"{a}.{b}.{c}",
            f"+1 {a} {b} {c}",
            f"1-{a}-{b}-{c}",
            f"{a}-{b}-{c}",
            digits,
            f"+1{digits}",
            f"{a}-{b}-{c} x{self.rng.randint(1, 999)}",
            f"({a}){b}-{c} ext. {self.rng.randint(1, 99)}",
            f"{a} {b} {c}",
        ]
        return self.rng.choice(forms)

    def _messy_email(self, email: str) -> str:
        r = self.rng.random()
        if r < 0.15:
            return email.upper()
        if r < 0.25:
            return f"  {email} "
        if r < 0.3:
            return f"mailto:{email}"
        if r < 0.4:
            local, _, domain = email.partition("@")
            return f"{local.capitalize()}@{domain}"
        return email

    # -- writing ---------------------------------------------------------------------------
    def run(self, out: Path) -> Stats:
        """Write the files into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        teams = max(1, round(cfg.persons / cfg.team_size))
        self.stats.teams = teams
        with (
            (out / "new_agents.csv").open("w", encoding="utf-8", newline="") as agents_fh,
            (out / "raw_company_info.csv").open("w", encoding="utf-8", newline="") as pages_fh,
            (out / "truth.csv").open("w", encoding="utf-8", newline="") as truth_fh,
            (out / "cases.csv").open("w", encoding="utf-8", newline="") as cases_fh,
        ):
            agents = csv.writer(agents_fh)
            pages = csv.writer(pages_fh)
            truth = csv.writer(truth_fh)
            cases = csv.writer(cases_fh)
            agents.writerow(
                [
                    "supabase_uuid",
                    "full_name",
                    "email_clean",
                    "phone_digits",
                    "team_id",
                    "social_links",
                ]
            )
            pages.writerow(["research_uuid", "team_id", "website", "team_members"])
            truth.writerow(["source", "source_key", "person_id"])
            cases.writerow(["case", "person_id", "source", "source_key", "note"])
            remaining = cfg.persons
            for team in range(1, teams + 1):
                size = (
                    remaining
                    if team == teams
                    else min(remaining, max(2, round(self.rng.gauss(cfg.team_size, 3))))
                )
                remaining -= size
                if size <= 0:
                    continue
                self._team(team, teams, size, agents, pages, truth, cases)
        return self.stats

    def _team(
        self, team: int, teams: int, size: int, agents: Any, pages: Any, truth: Any, cases: Any
    ) -> None:
        rng, cfg = self.rng, self.cfg
        people: list[Person] = []
        for _ in range(size):
            name = None
            pool = self._namesake_pool
            if pool and pool[-1][2] != team and rng.random() < cfg.namesake_share:
                first, last, _ = pool.pop()
                name = (first, last)
            person = self._person(team, name)
            if name is not None:
                self._case(cases, "namesakes", person, "", "", f"{name[0]} {name[1]}")
            elif rng.random() < cfg.namesake_share:
                pool.append((person.first, person.last, team))
            people.append(person)
        if size >= 3 and rng.random() < cfg.junior_share * size:
            father = people[0]
            son = self._person(team, (father.first, father.last))
            father.suffix, son.suffix = None, "Jr."
            son.middle = father.middle
            people.append(son)
            self._case(cases, "junior", father, "", "", f"father of {son.pid}")
            self._case(cases, "junior", son, "", "", f"son of {father.pid}")
        self.stats.persons += len(people)
        office = self._office(team)
        info = f"info@{self._domain(team)}"
        research_uuid = self._uuid()
        team_id = f"team-{team:06d}"
        members: list[Any] = []
        for person in people:
            on_page = rng.random() < cfg.member_share
            in_feed = rng.random() < cfg.agent_share
            if not on_page and not in_feed:
                in_feed = True
            if on_page:
                members.append(self._member(person, office, info))
            if in_feed:
                self._agent(person, team, teams, team_id, office, agents, truth, cases)
        for _ in range(sum(1 for _ in range(len(members)) if rng.random() < cfg.garbage_share)):
            junk: Any = rng.choice([None, 42, "see website", {}, [], {"title": "Office Manager"}])
            members.insert(rng.randrange(len(members) + 1), junk)
            self.stats.cases["garbage_member"] += 1
        # Positions are only known once garbage is in place: write the member truth now.
        for position, member in enumerate(members, start=1):
            if isinstance(member, dict) and "_pid" in member:
                pid = member.pop("_pid")
                truth.writerow(["company_member", f"{research_uuid}#{position}", pid])
                for case in member.pop("_cases"):
                    if case == "messy_phone":
                        continue  # nearly every member: counted, not listed
                    self._case(
                        cases,
                        case,
                        None,
                        "company_member",
                        f"{research_uuid}#{position}",
                        "",
                        pid=pid,
                    )
        website = f"https://www.{self._domain(team)}" if rng.random() < 0.9 else ""
        pages.writerow([research_uuid, team_id, website, json.dumps(members, ensure_ascii=False)])

    def _member(self, p: Person, office: str, info: str) -> dict[str, Any]:
        rng, cfg = self.rng, self.cfg
        name, case = self._member_name(p)
        planted = [case] if case else []
        member: dict[str, Any] = {}
        member["name" if rng.random() < 0.7 else "full_name"] = name
        emails: list[str] = []
        if rng.random() >= cfg.no_email_share:
            emails.append(
                self._messy_email(
                    p.email if not p.work_email or rng.random() < 0.6 else p.work_email
                )
            )
        if rng.random() < cfg.info_mailbox_share:
            emails.append(info)
            planted.append("info_mailbox")
        if rng.random() < 0.01:
            emails.append(rng.choice(["n/a", "none", "john at gmail dot com", "@", "x@y"]))
            planted.append("invalid_email")
        phones: list[str] = []
        if rng.random() < 0.8:
            phone = self._messy_phone(p.mobile)
            phones.append(phone)
            if not phone.isdigit():
                planted.append("messy_phone")
        if rng.random() < cfg.office_line_share:
            phones.append(self._messy_phone(office))
            planted.append("office_line")
        if not emails and not phones:
            planted.append("no_contact")
        if emails:
            if len(emails) == 1 and rng.random() < 0.7:
                member["email"] = emails[0]
            else:
                member["emails"] = emails
        if phones:
            if len(phones) == 1 and rng.random() < 0.7:
                member["phone"] = phones[0]
            else:
                member["phones"] = phones
        member["title"] = rng.choice(TITLES)
        if rng.random() < 0.4:
            member["license"] = f"{rng.choice(['CA', 'TX', 'FL', 'NY', 'WA'])}-{p.pid:07d}"
        if rng.random() < 0.2:
            member["links"] = {"linkedin": f"https://linkedin.com/in/{_local(p.first)}{p.pid}"}
        member["_pid"] = p.pid
        member["_cases"] = planted
        self.stats.members += 1
        for c in planted:
            self.stats.cases[c] += 1
        return member

    def _agent(
        self,
        p: Person,
        team: int,
        teams: int,
        team_id: str,
        office: str,
        agents: Any,
        truth: Any,
        cases: Any,
    ) -> None:
        rng = self.rng
        key = self._uuid()
        current = team_id
        planted: list[str] = []
        if teams > 1 and rng.random() < self.cfg.mover_share:
            other = rng.randrange(1, teams)
            current = f"team-{other if other < team else other + 1:06d}"
            planted.append("mover")
        emails = [p.email]
        if p.work_email and rng.random() < 0.5:
            emails.append(p.work_email)
        if rng.random() < 0.05:
            emails = []
        phones = [p.mobile if rng.random() < 0.85 else "1" + p.mobile]
        if rng.random() < 0.05:
            phones.append(office)
        if rng.random() < 0.05:
            phones = []
        social: dict[str, str] = {}
        for site in ("facebook", "instagram", "linkedin", "zillow"):
            if rng.random() < 0.3:
                social[site] = f"https://{site}.com/{_local(p.first)}.{_local(p.last)}.{p.pid}"
        name = self._display(p, accents=rng.random() < 0.7)
        agents.writerow(
            [key, name, json.dumps(emails), json.dumps(phones), current, json.dumps(social)]
        )
        truth.writerow(["new_agents", key, p.pid])
        self.stats.agents += 1
        for c in planted:
            self.stats.cases[c] += 1
            self._case(cases, c, p, "new_agents", key, f"now in {current}")

    def _case(
        self,
        cases: Any,
        case: str,
        person: Person | None,
        source: str,
        key: str,
        note: str,
        *,
        pid: int | None = None,
    ) -> None:
        cases.writerow([case, person.pid if person else pid, source, key, note])
        if case in ("namesakes", "junior"):
            self.stats.cases[case] += 1


def generate(out: Path, config: Config) -> Stats:
    """Generate the files for ``config`` into ``out``."""
    return Generator(config).run(out)


def split_arrivals(data: Path, parts: int, out: Path) -> list[Path]:
    """The two source files of ``data`` cut by rows into ``parts`` folders under ``out``
    (``part0``...; the last holds the final 10% of the rows, the others equal shares), as
    records arriving over several runs. Returns the folders in arrival order."""
    if parts < 2:
        raise ValueError("split_arrivals needs at least two parts")
    csv.field_size_limit(1 << 30)  # (a page of a big team is one long field)
    folders = [out / f"part{n}" for n in range(parts)]
    for folder in folders:
        folder.mkdir(parents=True)
    for name in ("new_agents.csv", "raw_company_info.csv"):
        with (data / name).open(newline="", encoding="utf-8") as handle:
            header, *body = list(csv.reader(handle))
        head = len(body) - len(body) // 10
        bounds = [head * n // (parts - 1) for n in range(parts)] + [len(body)]
        for n, folder in enumerate(folders):
            target = folder / f"{name.removesuffix('.csv')}_{n}.csv"
            with target.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(body[bounds[n] : bounds[n + 1]])
    return folders


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def write_or_exit(parser: argparse.ArgumentParser, out: Path, write: Callable[[], T]) -> T:
    """``write()``, with a folder that cannot be written a usage error naming it (exit 2)."""
    try:
        return write()
    except OSError as exc:
        parser.error(f"cannot write into {out}: {exc.strerror}")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m syncpipe.synth --persons 10000 --seed 7 --out data/synth``."""
    parser = argparse.ArgumentParser(
        prog="python -m syncpipe.synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--persons", type=positive_int, default=1000, help="how many real persons")
    parser.add_argument("--seed", type=int, default=42, help="random seed (same seed, same files)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--team-size", type=positive_int, default=13, help="average persons per team"
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    config = Config(persons=args.persons, seed=args.seed, team_size=args.team_size)
    stats = write_or_exit(parser, args.out, lambda: generate(args.out, config))
    elapsed = time.perf_counter() - t0
    print(
        f"{stats.persons:,} persons, {stats.teams:,} team pages, {stats.agents:,} new agents, "
        f"{stats.members:,} members in {elapsed:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    planted = ", ".join(f"{k}={v}" for k, v in stats.cases.items())
    print(f"planted cases: {planted}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["CASES", "NICKNAMES", "Config", "Stats", "generate", "main", "split_arrivals"]
