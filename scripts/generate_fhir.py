"""Generate carerecord's compact FHIR R4 model from the official definitions.

Source: the FHIR R4 (4.0.1) definition bundles, taken verbatim from the npm package
``hl7.fhir.r4.examples@4.0.1`` (CC0-1.0), found in ``../shared/data/fhir-r4-definitions``:
``profiles-types.json.gz``, ``profiles-resources.json.gz``, ``valuesets.json.gz`` and
``search-parameters.json.gz``.

Output (``src/carerecord/fhir/generated/``), never edited by hand:

* ``model.json``: for every complex type, resource and backbone element, the table of its child
  elements ``{name: [min, max, [type, ...], binding_url_or_null, [target, ...]_or_null]}``
  (``max`` is -1 for ``*``; a choice element keeps its ``[x]`` suffix); the primitive types with
  their regular expressions; the expansion of every value set that a required binding names and
  that the definitions enumerate; the Patient compartment definition; and ``elementOrder``,
  ``{type: [name, ...]}``, each table's element names in the order the StructureDefinition
  declares them (the element tables themselves are written with sorted keys), which the XML
  format needs (http://hl7.org/fhir/R4/xml.html: elements appear in definition order); and
  ``summaryElements``, ``{type: [name, ...]}``, the elements marked isSummary, for
  ``_summary=true`` (http://hl7.org/fhir/R4/search.html#summary).
* ``search_parameters.json``: every SearchParameter, trimmed to the fields the server uses.
* ``hierarchies.json``: parent codes of every is-a code system with nested concepts, for
  token ``:below``/``:above`` searches.

Run: ``python scripts/generate_fhir.py [DEFINITIONS_DIR]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "fhir-r4-definitions"
OUT = ROOT / "src" / "carerecord" / "fhir" / "generated"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"


def load(source: Path, name: str) -> dict[str, Any]:
    with gzip.open(source / name, "rt", encoding="utf-8") as f:
        return json.load(f)


def type_code(t: dict[str, Any]) -> str:
    """The FHIR type name of an ElementDefinition.type entry (System.String -> string etc.)."""
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext["valueUrl"]
        return code.rsplit(".", 1)[1].lower()
    return code


def strip_version(url: str) -> str:
    return url.split("|", 1)[0]


def element_tables(sd: dict[str, Any], model: dict[str, dict[str, Any]],
                   summary: dict[str, list[str]] | None = None) -> None:
    """Turn one StructureDefinition snapshot into element tables keyed by owner path."""
    root = sd["type"]
    for el in sd["snapshot"]["element"]:
        path: str = el["path"]
        if "." not in path:
            continue
        owner, name = path.rsplit(".", 1)
        if owner == root:
            owner = root
        if "contentReference" in el:
            types = [el["contentReference"].lstrip("#")]
        else:
            types = []
            for t in el.get("type", []):
                code = type_code(t)
                if code in ("BackboneElement", "Element") and name not in ("id",):
                    code = path  # a nested structure: its own table, named by path
                types.append(code)
        binding = None
        b = el.get("binding")
        if b and b.get("strength") == "required" and b.get("valueSet"):
            binding = strip_version(b["valueSet"])
        targets = None
        for t in el.get("type", []):
            if t["code"] in ("Reference", "canonical") and t.get("targetProfile"):
                targets = sorted({p.rsplit("/", 1)[1] for p in t["targetProfile"]})
        mx = -1 if el["max"] == "*" else int(el["max"])
        model.setdefault(owner, {})[name] = [el["min"], mx, types, binding, targets]
        if summary is not None and el.get("isSummary"):
            summary.setdefault(owner, []).append(name)


def primitive_regex(sd: dict[str, Any]) -> str | None:
    for el in sd["snapshot"]["element"]:
        if el["path"].endswith(".value"):
            for t in el.get("type", []):
                for ext in t.get("extension", []):
                    if ext["url"] == REGEX_EXT:
                        return str(ext["valueString"])
    return None


def codes_of_concepts(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(codes_of_concepts(c.get("concept", [])))
    return out


def expand(vs: dict[str, Any], codesystems: dict[str, dict[str, Any]],
           valuesets: dict[str, dict[str, Any]]) -> dict[str, list[str]] | None:
    """Expand a value set by its compose; None when the definitions cannot enumerate it."""
    compose = vs.get("compose")
    if not compose or compose.get("exclude"):
        return None
    result: dict[str, set[str]] = {}
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        for ref in inc.get("valueSet", []):
            sub = valuesets.get(strip_version(ref))
            part = expand(sub, codesystems, valuesets) if sub else None
            if part is None:
                return None
            for system, codes in part.items():
                result.setdefault(system, set()).update(codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            result.setdefault(system, set()).update(c["code"] for c in inc["concept"])
        else:
            cs = codesystems.get(system)
            if cs is None or cs.get("content") != "complete":
                return None
            result.setdefault(system, set()).update(codes_of_concepts(cs.get("concept", [])))
    return {system: sorted(codes) for system, codes in result.items()}


def hierarchies(source: Path) -> dict[str, dict[str, list[str]]]:
    """{system: {code: [parent codes]}} of every code system whose nested concepts mean is-a,
    for token :below/:above (http://hl7.org/fhir/R4/search.html#token)."""
    out: dict[str, dict[str, list[str]]] = {}

    def walk(concepts: list[dict[str, Any]], parent: str | None, into: dict[str, list[str]]) -> None:
        for c in concepts:
            parents = into.setdefault(c["code"], [])
            if parent is not None and parent not in parents:
                parents.append(parent)
            walk(c.get("concept", []), c["code"], into)

    for name in ("valuesets.json.gz", "v3-codesystems.json.gz", "v2-tables.json.gz"):
        for entry in load(source, name)["entry"]:
            cs = entry["resource"]
            if cs["resourceType"] != "CodeSystem" or cs.get("hierarchyMeaning") != "is-a":
                continue
            if any("concept" in c for c in cs.get("concept", [])):
                walk(cs["concept"], None, out.setdefault(cs["url"], {}))
    return out


def main(source: Path = DEFAULT_SOURCE) -> None:
    types = load(source, "profiles-types.json.gz")
    resources = load(source, "profiles-resources.json.gz")
    vsets = load(source, "valuesets.json.gz")
    params = load(source, "search-parameters.json.gz")

    model: dict[str, dict[str, Any]] = {}
    primitives: dict[str, str | None] = {}
    complex_types: list[str] = []
    resource_types: list[str] = []
    abstract: list[str] = []
    summary: dict[str, list[str]] = {}
    for bundle in (types, resources):
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
                continue
            if sd["kind"] == "primitive-type":
                primitives[sd["id"]] = primitive_regex(sd)
                continue
            if sd.get("abstract") and sd["kind"] == "resource":
                abstract.append(sd["id"])
            if sd["kind"] == "resource":
                if not sd.get("abstract"):
                    resource_types.append(sd["id"])
            elif sd["kind"] == "complex-type":
                complex_types.append(sd["id"])
            element_tables(sd, model, summary)
    # Profiled data types that elements name directly (SimpleQuantity, MoneyQuantity) use Quantity.
    for alias in ("SimpleQuantity", "MoneyQuantity"):
        model[alias] = model["Quantity"]
    element_order = {owner: list(table) for owner, table in model.items()}

    codesystems: dict[str, dict[str, Any]] = {}
    valuesets: dict[str, dict[str, Any]] = {}
    for entry in vsets["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "CodeSystem":
            codesystems[r["url"]] = r
        elif r["resourceType"] == "ValueSet":
            valuesets[r["url"]] = r
    wanted = {row[3] for table in model.values() for row in table.values() if row[3]}
    expansions: dict[str, dict[str, list[str]]] = {}
    unexpanded: list[str] = []
    for url in sorted(wanted):
        vs = valuesets.get(url)
        exp = expand(vs, codesystems, valuesets) if vs else None
        if exp:
            expansions[url] = exp
        else:
            unexpanded.append(url)

    compartment: dict[str, list[str]] = {}
    for entry in resources["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "CompartmentDefinition" and r["code"] == "Patient":
            for res in r["resource"]:
                if res.get("param"):
                    compartment[res["code"]] = res["param"]

    out_params = []
    for entry in params["entry"]:
        sp = entry["resource"]
        row = {k: sp[k] for k in ("id", "url", "code", "base", "type", "expression", "target",
                                  "component", "multipleOr", "multipleAnd", "modifier",
                                  "comparator", "chain") if k in sp}
        out_params.append(row)

    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"generator": "scripts/generate_fhir.py",
            "source": "FHIR R4 4.0.1 definitions, npm hl7.fhir.r4.examples@4.0.1 (CC0-1.0)"}
    doc = {"meta": meta, "fhirVersion": "4.0.1", "resourceTypes": sorted(resource_types),
           "complexTypes": sorted(complex_types), "abstractResources": sorted(abstract),
           "primitives": primitives, "elements": model, "valueSets": expansions,
           "unexpandedValueSets": unexpanded, "patientCompartment": compartment,
           "elementOrder": element_order, "summaryElements": summary}
    (OUT / "model.json").write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True))
    (OUT / "hierarchies.json").write_text(json.dumps(
        {"meta": meta, "hierarchies": hierarchies(source)}, separators=(",", ":"), sort_keys=True))
    (OUT / "search_parameters.json").write_text(
        json.dumps({"meta": meta, "parameters": out_params}, separators=(",", ":"), sort_keys=True))
    print(f"{len(resource_types)} resource types, {len(model)} element tables, "
          f"{len(expansions)} value sets expanded ({len(unexpanded)} not enumerable), "
          f"{len(out_params)} search parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
