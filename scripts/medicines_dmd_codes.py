"""Fill in the dm+d/SNOMED CT codes of the bundled medicines knowledge base from a dm+d release.

    .venv/bin/python scripts/medicines_dmd_codes.py <unzipped dm+d release folder>

For each ingredient of ``src/carerecord/services/medicines/data/medicines.json`` it records
the SNOMED CT substance codes whose dm+d name is the ingredient's name or the name followed by
a salt (``Amlodipine`` -> ``Amlodipine``, ``Amlodipine besilate``); for each medicine, the VTM
code of the VTM with exactly its name. Nothing is guessed: a name with no exact match gets no
code and is matched by name at run time. The release used is recorded in the file's ``about``.

Only identifiers and names are copied, never the release itself (which is distributed under
the NHSBSA dm+d licence through NHS TRUD)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from carerecord.services.medicines.dmd_loader import load_dmd

DATA = Path(__file__).resolve().parents[1] / "src/carerecord/services/medicines/data/medicines.json"


def main(release: str) -> None:
    term = load_dmd(release)
    doc = orjson.loads(DATA.read_bytes())
    by_name: dict[str, list[tuple[str, str]]] = {}
    for code, name in term.substances.items():
        by_name.setdefault(name.split(" ")[0].lower(), []).append((name, code))
    vtm_by_name = {v.name: v.id for v in term.vtms.values()}
    missing = []
    for ing in doc["ingredients"]:
        name = ing["name"]
        found = sorted((n, c) for n, c in by_name.get(name.split(" ")[0].lower(), [])
                       if n == name or n.startswith(name + " "))
        if found:
            ing["substances"] = [{"code": c, "name": n} for n, c in found]
        else:
            missing.append(name)
    for med in doc["medicines"]:
        if med["name"] in vtm_by_name:
            med["vtm"] = vtm_by_name[med["name"]]
    doc["about"]["codes"] = (f"VTM and substance codes matched by exact name in NHSBSA dm+d release "
                             f"{term.release}; names without an exact match have no code.")
    DATA.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(doc['ingredients']) - len(missing)} ingredients coded; no substance for: {', '.join(missing)}")


if __name__ == "__main__":
    main(sys.argv[1])
