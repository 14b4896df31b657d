"""A second labelled generator, of another shape: ``python -m syncpipe.synth_noisy``.

Written apart from ``syncpipe.synth`` and with its own noise model, so that the matcher is not
tuned to one generator. Persons have a personal e-mail, often none at all, and no phones; teams
are large, noisy and often missing; names are corrupted heavily and independently per record:
keyboard typos (neighbour keys, dropped and doubled letters), transpositions, nicknames from a
list of its own, the given name cut to an initial, "Last First" order without a comma, a
missing given name, a missing or hyphenated second surname, upper case. Agents move teams; a
feed row may carry no team; some e-mails belong to a brokerage desk that several agents use;
common surnames are common (a Zipf-like draw), so namesakes occur naturally.

Same files as ``syncpipe.synth``: new_agents.csv, raw_company_info.csv, truth.csv, cases.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncpipe.synth import positive_int, write_or_exit

GIVEN = [
    "aaron",
    "adam",
    "adrian",
    "aiden",
    "alan",
    "albert",
    "alexis",
    "alice",
    "alicia",
    "allison",
    "amber",
    "amy",
    "ana",
    "andrea",
    "angel",
    "anna",
    "annie",
    "april",
    "arthur",
    "ashley",
    "austin",
    "barry",
    "beverly",
    "bianca",
    "blake",
    "bobbie",
    "brandon",
    "brenda",
    "brian",
    "brittany",
    "bruce",
    "bryan",
    "caleb",
    "calvin",
    "cameron",
    "carl",
    "carla",
    "carlos",
    "carmen",
    "carol",
    "caroline",
    "carrie",
    "casey",
    "chad",
    "chelsea",
    "cheryl",
    "chloe",
    "cody",
    "colin",
    "connor",
    "courtney",
    "craig",
    "crystal",
    "curtis",
    "dale",
    "dana",
    "darlene",
    "darren",
    "dawn",
    "dean",
    "denise",
    "dennis",
    "derek",
    "diana",
    "diane",
    "dolores",
    "dominique",
    "donna",
    "doris",
    "dustin",
    "dylan",
    "eileen",
    "elaine",
    "ellen",
    "emily",
    "emma",
    "eric",
    "erica",
    "erin",
    "ethan",
    "evan",
    "evelyn",
    "faith",
    "felix",
    "fernando",
    "gail",
    "gary",
    "gavin",
    "gina",
    "glen",
    "gloria",
    "grace",
    "hannah",
    "heather",
    "helen",
    "holly",
    "howard",
    "ian",
    "irene",
    "isaac",
    "ivan",
    "jack",
    "jacob",
    "jade",
    "janet",
    "janice",
    "jared",
    "jasmine",
    "jason",
    "javier",
    "jay",
    "jean",
    "jenna",
    "jeremiah",
    "jesse",
    "jill",
    "joan",
    "joanne",
    "joel",
    "jordan",
    "joyce",
    "juan",
    "julia",
    "julie",
    "justin",
    "karen",
    "karl",
    "kayla",
    "keith",
    "kelly",
    "kevin",
    "kristen",
    "kyle",
    "lance",
    "laura",
    "lauren",
    "leah",
    "lee",
    "leslie",
    "lily",
    "linda",
    "lisa",
    "logan",
    "lori",
    "lucy",
    "luis",
    "lydia",
    "lynn",
    "mara",
    "marcus",
    "maria",
    "marie",
    "mario",
    "mark",
    "marsha",
    "martin",
    "marvin",
    "mary",
    "megan",
    "melanie",
    "mia",
    "miguel",
    "miles",
    "molly",
    "monica",
    "morgan",
    "nadia",
    "naomi",
    "neil",
    "nina",
    "noah",
    "nora",
    "oscar",
    "owen",
    "paige",
    "paul",
    "paula",
    "pedro",
    "penny",
    "perry",
    "rachel",
    "ralph",
    "ramon",
    "randy",
    "regina",
    "renee",
    "rhonda",
    "rita",
    "roger",
    "rosa",
    "ross",
    "ruby",
    "russell",
    "ruth",
    "ryan",
    "sabrina",
    "sally",
    "sara",
    "scott",
    "sean",
    "seth",
    "shane",
    "sharon",
    "shawn",
    "sheila",
    "shirley",
    "sofia",
    "sonia",
    "spencer",
    "stacy",
    "stanley",
    "sylvia",
    "tammy",
    "tanya",
    "tara",
    "taylor",
    "teresa",
    "todd",
    "tracy",
    "travis",
    "trevor",
    "troy",
    "valerie",
    "vanessa",
    "vera",
    "victor",
    "wade",
    "wanda",
    "wayne",
    "wendy",
    "wesley",
    "yolanda",
    "yvonne",
    "zoe",
]

# Given names with the short forms this generator uses (its own list, not syncpipe.synth's).
SHORT: dict[str, list[str]] = {
    "william": ["will", "bill", "billy"],
    "robert": ["bob", "robbie", "rob"],
    "elizabeth": ["beth", "liz", "eliza"],
    "jennifer": ["jenny", "jen"],
    "michael": ["mike", "mick"],
    "thomas": ["tom", "tommy"],
    "christopher": ["chris"],
    "katherine": ["kate", "katie", "kathy"],
    "margaret": ["maggie", "peggy"],
    "richard": ["rick", "rich"],
    "anthony": ["tony"],
    "joseph": ["joe"],
    "daniel": ["dan", "danny"],
    "matthew": ["matt"],
    "nicholas": ["nick"],
    "samuel": ["sam"],
    "rebecca": ["becky"],
    "patricia": ["patty", "trish"],
    "edward": ["ed", "ted"],
    "andrew": ["andy", "drew"],
    "stephanie": ["steph"],
    "victoria": ["vicky", "tori"],
    "jonathan": ["jon"],
    "benjamin": ["ben"],
    "deborah": ["debbie"],
    "timothy": ["tim"],
    "gregory": ["greg"],
    "susan": ["sue"],
    "kimberly": ["kim"],
    "alexander": ["alex"],
}

SURNAMES = [
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
    "willis",
    "carpenter",
    "lawrence",
    "sandoval",
    "guerrero",
    "george",
    "chapman",
    "rios",
    "estrada",
    "ortega",
    "watkins",
    "greene",
    "nunez",
    "wheeler",
    "valdez",
    "harper",
    "burke",
    "larson",
    "santiago",
    "maldonado",
    "morrison",
    "franklin",
    "carlson",
    "austin",
    "dominguez",
    "carr",
    "lawson",
    "jacobs",
    "obrien",
    "lynch",
    "singh",
    "vega",
    "bishop",
    "montgomery",
    "oliver",
    "jensen",
    "harvey",
    "williamson",
    "gilbert",
    "dean",
    "sims",
    "espinoza",
    "howell",
    "li",
    "wong",
    "reid",
    "hanson",
    "le",
    "mccoy",
    "garrett",
    "burton",
    "fuller",
    "wang",
    "weber",
    "welch",
    "rojas",
    "lucas",
    "marquez",
    "fields",
    "park",
    "yang",
    "little",
    "banks",
    "padilla",
    "day",
    "walsh",
    "bowman",
    "schultz",
    "luna",
    "fowler",
    "mejia",
    "davidson",
    "acosta",
    "brewer",
    "may",
    "holland",
    "juarez",
    "newman",
    "pearson",
    "curtis",
    "cortez",
    "douglas",
    "schneider",
    "joseph",
    "barrett",
    "navarro",
    "figueroa",
    "keller",
    "avila",
    "wade",
    "molina",
    "stanley",
    "hopkins",
    "campos",
    "barnett",
    "bates",
    "chambers",
    "caldwell",
    "beck",
    "lambert",
    "miranda",
    "byrd",
    "craig",
    "ayala",
    "lowe",
    "frazier",
    "powers",
    "neal",
    "leonard",
    "gregory",
    "carrillo",
    "sutton",
    "fleming",
    "rhodes",
    "shelton",
    "schwartz",
    "norris",
    "jennings",
    "watts",
    "duran",
    "walters",
    "cohen",
    "mcdaniel",
    "moran",
    "parks",
    "steele",
    "vaughn",
    "becker",
    "holt",
    "deleon",
    "barker",
    "terry",
    "hale",
    "leon",
    "hail",
    "benson",
    "haynes",
    "horton",
    "miles",
    "lyons",
    "pham",
    "graves",
    "bush",
    "thornton",
    "wolfe",
    "warner",
    "cabrera",
    "mckinney",
    "mann",
    "zimmerman",
    "dawson",
    "lara",
    "fletcher",
    "page",
    "mccarthy",
    "love",
    "robles",
    "cervantes",
    "solis",
    "erickson",
    "reeves",
    "chang",
    "klein",
    "salinas",
    "fuentes",
    "baldwin",
    "daniel",
    "simon",
    "velasquez",
    "hardy",
    "higgins",
    "aguirre",
    "lin",
    "cummings",
    "chandler",
    "sharp",
    "barber",
    "bowen",
    "ochoa",
    "dennis",
    "robbins",
    "liu",
    "ramsey",
    "francis",
    "griffith",
    "paul",
    "blair",
    "oconnor",
    "cardenas",
    "pacheco",
    "cross",
    "calderon",
    "quinn",
    "moss",
    "swanson",
    "chan",
    "rivas",
    "khan",
    "rodgers",
    "serrano",
    "fitzgerald",
    "rosales",
    "stevenson",
    "christensen",
    "manning",
    "gill",
    "curry",
    "mclaughlin",
    "harmon",
    "mcgee",
    "gross",
    "doyle",
    "garner",
    "newton",
    "burgess",
    "reese",
    "walton",
    "blake",
    "trujillo",
    "adkins",
    "brady",
    "goodman",
    "roman",
    "webster",
    "goodwin",
    "fischer",
    "huang",
    "potter",
    "delacruz",
    "montoya",
    "todd",
    "wu",
    "hines",
    "mullins",
    "castaneda",
    "malone",
    "cannon",
    "tate",
    "mack",
    "sherman",
    "hubbard",
    "hodges",
    "zhang",
    "guerra",
    "wolf",
    "valencia",
    "saunders",
    "franco",
    "rowe",
    "gallagher",
    "farmer",
    "hammond",
    "hampton",
    "townsend",
    "ingram",
    "wise",
    "gallegos",
    "clarke",
    "barton",
    "schroeder",
    "maxwell",
    "waters",
    "logan",
    "camacho",
    "strickland",
    "norman",
    "person",
    "colon",
    "mcguire",
    "parsons",
    "frank",
    "summers",
    "castellano",
    "kowalski",
    "nakamura",
    "okafor",
    "abernathy",
    "villanueva",
    "lindqvist",
    "oyelaran",
    "thibodeaux",
    "przybylski",
    "vanderwoude",
    "achterberg",
    "baptiste",
    "ferreira",
    "iwasaki",
    "zielinski",
    "oduya",
    "halvorsen",
]

KEYBOARD = {
    "a": "qsz", "b": "vgn", "c": "xvd", "d": "sfe", "e": "wrd", "f": "dgr", "g": "fht",
    "h": "gjy", "i": "uok", "j": "hku", "k": "jli", "l": "kop", "m": "nj", "n": "bmh",
    "o": "ipl", "p": "ol", "q": "wa", "r": "etf", "s": "adw", "t": "ryg", "u": "yij",
    "v": "cbf", "w": "qes", "x": "zsc", "y": "tuh", "z": "xa",
}  # fmt: skip

MAIL = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com", "proton.me")


@dataclass
class Config:
    """Knobs (probabilities per person or per record)."""

    persons: int = 1000
    seed: int = 11
    team_size: int = 40
    records_mean: float = 1.9  # source records per person (geometric, at least 1)
    no_email: float = 0.35  # a record without the person's e-mail
    desk_email: float = 0.04  # a record carrying its brokerage desk's shared mailbox
    no_team: float = 0.2  # a feed record with an empty team
    moved: float = 0.08  # a record in another team than the person's
    typo: float = 0.18  # per name part
    nickname: float = 0.15
    initial: float = 0.07
    swapped: float = 0.06
    no_given: float = 0.03
    upper: float = 0.05
    double_surname: float = 0.03


@dataclass
class _Person:
    pid: int
    given: str
    family: str
    email: str | None
    team: int


class _Noisy:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 7919 + 3)
        self.ids = random.Random(cfg.seed ^ 0xBEEF)
        weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(SURNAMES))]
        self.surname_weights = weights
        givens = GIVEN + list(SHORT)
        self.givens = givens

    def uid(self) -> str:
        return str(uuid.UUID(int=self.ids.getrandbits(128), version=4))

    def typo(self, word: str) -> str:
        rng = self.rng
        if len(word) < 3:
            return word
        i = rng.randrange(len(word))
        r = rng.random()
        if r < 0.35 and word[i] in KEYBOARD:
            return word[:i] + rng.choice(KEYBOARD[word[i]]) + word[i + 1 :]
        if r < 0.6 and i < len(word) - 1:
            return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if r < 0.8:
            return word[:i] + word[i + 1 :]
        return word[:i] + word[i] + word[i:]

    def name(self, p: _Person) -> str:
        rng, cfg = self.rng, self.cfg
        given, family = p.given, p.family
        if given in SHORT and rng.random() < cfg.nickname:
            given = rng.choice(SHORT[given])
        if rng.random() < cfg.typo:
            given = self.typo(given)
        if rng.random() < cfg.typo:
            family = self.typo(family)
        if rng.random() < cfg.double_surname:
            family = family + "-" + rng.choice(SURNAMES)
        g = given.capitalize()
        if rng.random() < cfg.initial:
            g = given[0].upper() + ("." if rng.random() < 0.5 else "")
        f = "-".join(x.capitalize() for x in family.split("-"))
        r = rng.random()
        if r < cfg.no_given:
            text = f
        elif r < cfg.no_given + cfg.swapped:
            text = f"{f} {g}"
        else:
            text = f"{g} {f}"
        if rng.random() < cfg.upper:
            text = text.upper()
        return text

    def run(self, out: Path) -> None:
        cfg, rng = self.cfg, self.rng
        out.mkdir(parents=True, exist_ok=True)
        teams = max(1, cfg.persons // cfg.team_size)
        persons: list[_Person] = []
        for pid in range(1, cfg.persons + 1):
            given = rng.choice(self.givens)
            family = rng.choices(SURNAMES, self.surname_weights)[0]
            email = None
            if rng.random() < 0.85:
                style = rng.random()
                if style < 0.4:
                    local = f"{given}.{family}"
                else:
                    local = f"{given[0]}{family}{rng.randint(1, 99)}"
                email = f"{local}{pid % 97}@{rng.choice(MAIL)}"
            persons.append(_Person(pid, given, family, email, rng.randrange(1, teams + 1)))
        feed: list[list[str]] = []
        pages: dict[int, list[tuple[int, dict[str, Any]]]] = {t: [] for t in range(1, teams + 1)}
        truth: list[tuple[str, str, int]] = []
        for p in persons:
            n = 1
            while rng.random() < 1 - 1 / cfg.records_mean and n < 6:
                n += 1
            for _ in range(n):
                team = p.team
                if rng.random() < cfg.moved:
                    team = rng.randrange(1, teams + 1)
                emails: list[str] = []
                if p.email and rng.random() >= cfg.no_email:
                    emails.append(p.email.upper() if rng.random() < 0.1 else p.email)
                if rng.random() < cfg.desk_email:
                    emails.append(f"desk@brokerage{team}.com")
                if rng.random() < 0.5:
                    key = self.uid()
                    team_id = "" if rng.random() < cfg.no_team else f"office-{team:05d}"
                    feed.append([key, self.name(p), json.dumps(emails), "[]", team_id, "{}"])
                    truth.append(("new_agents", key, p.pid))
                else:
                    member: dict[str, Any] = {"name": self.name(p)}
                    if emails:
                        member["emails"] = emails
                    pages[team].append((p.pid, member))
        with (
            (out / "new_agents.csv").open("w", encoding="utf-8", newline="") as fa,
            (out / "raw_company_info.csv").open("w", encoding="utf-8", newline="") as fp,
        ):
            wa, wp = csv.writer(fa), csv.writer(fp)
            wa.writerow(
                ["supabase_uuid", "full_name", "email_clean", "phone_digits", "team_id",
                 "social_links"]
            )  # fmt: skip
            wa.writerows(feed)
            wp.writerow(["research_uuid", "team_id", "website", "team_members"])
            for team, members in pages.items():
                if not members:
                    continue
                research = self.uid()
                rng.shuffle(members)
                for pos, (pid, _m) in enumerate(members, start=1):
                    truth.append(("company_member", f"{research}#{pos}", pid))
                wp.writerow(
                    [research, f"office-{team:05d}", "",
                     json.dumps([m for _, m in members], ensure_ascii=False)]
                )  # fmt: skip
        with (out / "truth.csv").open("w", encoding="utf-8", newline="") as ft:
            wt = csv.writer(ft)
            wt.writerow(["source", "source_key", "person_id"])
            wt.writerows(truth)
        with (out / "cases.csv").open("w", encoding="utf-8", newline="") as fc:
            csv.writer(fc).writerow(["case", "person_id", "source", "source_key", "note"])


def generate(out: Path, config: Config) -> None:
    """Generate the files for ``config`` into ``out``."""
    _Noisy(config).run(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncpipe.synth_noisy", description=__doc__)
    parser.add_argument("--persons", type=positive_int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = Config(persons=args.persons, seed=args.seed)
    write_or_exit(parser, args.out, lambda: generate(args.out, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
