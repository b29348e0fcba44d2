"""Write the name lists that the AN4 LM spells out (`asr lm build --spell`), from two PyPI packages' data.

A third of AN4's utterances spell a word letter by letter: the speaker's first name, surname, street and
city, as in its census questions. A letter n-gram that knows how English names are spelled corrects
letters the acoustic model confuses ("s h a r o e" -> "s h a r o n"), so the recipe's LM adds these lists:

- first-names.txt: every first name of the 1990 US Census name lists (4275 female, 1219 male: 5163
  different);
- surnames.txt: the 10,000 most common surnames of the same census (of 88,799; the rarer ones did not
  help on dev and would double the LM);
- places.txt: every city and town name of the US ZIP code list (its primary and acceptable names), less
  a few postal entities.

US Census data are public domain; the ZIP code list is the MIT-licensed `zipcodes` package's. The lists
hold no AN4 data, and are committed in `recipes/an4/names/`, so the recipe needs neither package; this
script rebuilds them byte for byte:

    pip install names==0.3.0 zipcodes==3.0.0
    python recipes/an4/make_names.py --out recipes/an4/names
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

from asr.atomic import atomic_open
from asr.text import spell_out

SURNAMES = 10_000


def census_names(filename: str, limit: int | None = None) -> list[str]:
    """The names of one of the `names` package's census files (lines 'NAME freq cumfreq rank'), most common first."""
    text = resources.files("names").joinpath(filename).read_text(encoding="ascii")
    return [line.split()[0] for line in text.splitlines() if line.strip()][:limit]


def place_names() -> list[str]:
    import zipcodes

    places = set()
    for z in zipcodes.list_all():
        places.update(name.upper() for name in [z["city"], *z["acceptable_cities"]])
    # Drop the few that are postal entities, not places ("115 CRM FIRMS", "AT&T", "TIME/LIFE").
    return sorted(p for p in places if re.fullmatch(r"[A-Z][A-Z .'-]*", p))


def write_list(path: Path, names: list[str]) -> None:
    """Write `names`, one per line, keeping the first of those spelled alike ("MARY JO", "MARYJO")."""
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(spell_out(name), name)
    unique = list(first.values())
    with atomic_open(path, "w") as f:
        f.write("".join(f"{name}\n" for name in unique))
    print(f"wrote {path}: {len(unique)} names")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("recipes/an4/names"), help="folder for the three lists")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_list(args.out / "first-names.txt", census_names("dist.female.first") + census_names("dist.male.first"))
    write_list(args.out / "surnames.txt", census_names("dist.all.last", SURNAMES))
    write_list(args.out / "places.txt", place_names())


if __name__ == "__main__":
    main()
