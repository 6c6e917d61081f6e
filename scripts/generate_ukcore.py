"""Generate carerecord's compact UK Core profile constraints from the official definitions.

Source: UK Core R4 STU2 (package UKCore.R4.STU.02.00.00, Apache-2.0), GitHub
NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN at commit 3d2827e3e9918674640d0c14a0f870084397a615, found in
``../shared/data/uk-core`` (``structuredefinitions/``, ``valuesets/``, ``codesystems/``, FHIR XML).
Value sets that include FHIR or HL7 terminology are expanded with the R4 definitions in
``../shared/data/fhir-r4-definitions`` (``valuesets``, ``v3-codesystems``, ``v2-tables``).

The StructureDefinitions are differential only. A profile derived from another UK Core profile
(e.g. UKCore-Observation-VitalSigns-BloodPressure) gets its ancestors' differential elements merged
under its own, by element id, so each profile in the output stands alone on top of base R4 (whose
rules ``carerecord.fhir.validation`` already checks).

Output ``src/carerecord/fhir/generated/ukcore.json``, never edited by hand::

    {"meta": {...source...},
     "profiles": {url: {"id", "name", "version", "type", "kind", "base",
                        "rules": [{"id": element id, "min"?, "max"?, "fixed"?, "pattern"?,
                                   "types"?, "targets"?, "binding"?: {"valueSet", "codes"},
                                   "constraints"?: [{"key", "severity", "human", "expression"}]}],
                        "slices": {slice element id: {"url": u} | {"values": [[path, value]]}
                                   | null (membership not decidable without full slicing)}}}}

Only rules that add something to base R4 are kept: cardinality narrower than the base element,
fixed/pattern values, choice type restrictions, Reference target restrictions (as resource types),
required bindings (with their expansion when it can be enumerated) and FHIRPath invariants.
Run: ``python scripts/generate_ukcore.py [UK_CORE_DIR]``.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from lxml import etree

from carerecord.errors import Invalid
from carerecord.fhir import model
from carerecord.fhir.xml import parse_xml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_SOURCE = SHARED / "uk-core"
R4_DEFINITIONS = SHARED / "fhir-r4-definitions"
OUT = ROOT / "src" / "carerecord" / "fhir" / "generated" / "ukcore.json"
COMMIT = "3d2827e3e9918674640d0c14a0f870084397a615"
CORE_SD = "http://hl7.org/fhir/StructureDefinition/"

Json = dict[str, Any]


DEFECTS: list[str] = []  # source files our strict XML parser refused, read leniently instead


def read_dir(folder: Path) -> list[Json]:
    """All resources of a folder of FHIR XML files, via carerecord's own XML parser."""
    out = []
    for path in sorted(folder.glob("*.xml")):
        try:
            out.append(parse_xml(path.read_bytes()))
        except Invalid as e:
            DEFECTS.append(f"{path.name}: {e.message}")
            out.append(lenient_terminology(path))
    return out


def lenient_terminology(path: Path) -> Json:
    """url, content and concept codes of a CodeSystem that is not well-formed FHIR, read with lxml."""
    ns = {"f": "http://hl7.org/fhir"}
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()

    def concepts(el: Any) -> list[Json]:
        return [{"code": c.find("f:code", ns).get("value"), "concept": concepts(c)}
                for c in el.findall("f:concept", ns)]

    def value(name: str) -> str | None:
        found = root.find(f"f:{name}", ns)
        return None if found is None else found.get("value")

    return {"resourceType": etree.QName(root).localname, "url": value("url"),
            "content": value("content"), "concept": concepts(root)}


def r4_terminology() -> list[Json]:
    out: list[Json] = []
    for name in ("valuesets.json.gz", "v3-codesystems.json.gz", "v2-tables.json.gz"):
        with gzip.open(R4_DEFINITIONS / name, "rt", encoding="utf-8") as f:
            out.extend(e["resource"] for e in json.load(f)["entry"])
    return out


def concept_codes(concepts: list[Json]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(concept_codes(c.get("concept", [])))
    return out


def expand(vs: Json, codesystems: dict[str, Json], valuesets: dict[str, Json],
           depth: int = 0) -> dict[str, list[str]] | None:
    """Expand a value set by its compose; None when it cannot be enumerated from the files."""
    compose = vs.get("compose")
    if not compose or compose.get("exclude") or depth > 10:
        return complete_expansion(vs)
    result: dict[str, set[str]] = {}
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return complete_expansion(vs)
        for ref in inc.get("valueSet", []):
            sub = valuesets.get(ref.split("|")[0])
            part = expand(sub, codesystems, valuesets, depth + 1) if sub else None
            if part is None:
                return complete_expansion(vs)
            for system, codes in part.items():
                result.setdefault(system, set()).update(codes)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            result.setdefault(system, set()).update(c["code"] for c in inc["concept"])
        else:
            cs = codesystems.get(system)
            if cs is None or cs.get("content") != "complete" or not cs.get("concept"):
                return complete_expansion(vs)
            result.setdefault(system, set()).update(concept_codes(cs["concept"]))
    return {system: sorted(codes) for system, codes in result.items()} or None


def complete_expansion(vs: Json) -> dict[str, list[str]] | None:
    """The value set's own stored expansion, if it claims to hold every code (total = contains)."""
    exp = vs.get("expansion") or {}
    contains = exp.get("contains") or []
    if not contains or exp.get("total") != len(contains) or any(c.get("contains") for c in contains):
        return None
    out: dict[str, set[str]] = {}
    for c in contains:
        if c.get("system") and c.get("code"):
            out.setdefault(c["system"], set()).add(c["code"])
    return {system: sorted(codes) for system, codes in out.items()} or None


def merged_elements(sd: Json, by_url: dict[str, Json]) -> dict[str, Json]:
    """The differential elements of a profile and its UK Core ancestors, merged by element id."""
    base = by_url.get(sd.get("baseDefinition", ""))
    merged = dict(merged_elements(base, by_url)) if base else {}
    for el in sd.get("differential", {}).get("element", []):
        merged[el["id"]] = {**merged.get(el["id"], {}), **el}
    return merged


def steps(element_id: str) -> list[tuple[str, str | None]]:
    """'A.b:s.c' -> [('A', None), ('b', 's'), ('c', None)] (slice names never contain dots here)."""
    out: list[tuple[str, str | None]] = []
    for part in element_id.split("."):
        name, _, slice_name = part.partition(":")
        out.append((name, slice_name or None))
    return out


def base_element(path: list[str]) -> model.Element | None:
    """The base R4 element of an unsliced path such as ['Observation', 'component', 'code']."""
    type_name = path[0]
    el: model.Element | None = None
    for i, name in enumerate(path[1:]):
        kids = model.children(type_name)
        if kids is None:
            return None
        found = [(e, t) for e, t in kids.values() if e.name == name]
        if not found:
            return None
        el = found[0][0]
        if i + 2 < len(path):  # descend: pick the type that has the next child
            candidates = [t for _, t in found if model.children(t) and any(
                e.name == path[i + 2] for e, _ in model.children(t).values())]  # type: ignore[union-attr]
            type_name = candidates[0] if candidates else found[0][1]
    return el


def type_of_sd(url: str, by_url: dict[str, Json]) -> str:
    url = url.split("|")[0]
    if url in by_url:
        return str(by_url[url]["type"])
    return url.rsplit("/", 1)[1]


def rule_of(el: Json, by_url: dict[str, Json], expansions: Any) -> Json | None:
    """The compact rule of one merged element, or None when it adds nothing to base R4."""
    rule: Json = {"id": el["id"]}
    path = el["path"].split(".")
    base = base_element(path) if len(path) > 1 else None
    mn, mx = el.get("min"), el.get("max")
    if mn is not None and (base is None or mn > base.min):
        rule["min"] = mn
    if mx is not None and mx != "*" and (base is None or base.max == -1 or int(mx) < base.max):
        rule["max"] = int(mx)
    for key, value in el.items():
        if key.startswith("fixed"):
            rule["fixed"] = value
        elif key.startswith("pattern"):
            rule["pattern"] = value
    types = el.get("type", [])
    if path[-1].endswith("[x]") and types:
        rule["types"] = sorted({t["code"] for t in types})
    targets = sorted({type_of_sd(p, by_url) for t in types for p in t.get("targetProfile", [])})
    if targets and "Resource" not in targets:
        rule["targets"] = targets
    binding = el.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        url = binding["valueSet"].split("|")[0]
        rule["binding"] = {"valueSet": url, "codes": expansions(url)}
    if el.get("constraint"):
        rule["constraints"] = [{k: c[k] for k in ("key", "severity", "human", "expression")}
                               for c in el["constraint"] if c.get("expression")]
    return rule if len(rule) > 1 else None


def slice_match(slice_id: str, elements: dict[str, Json]) -> Json | None:
    """How to recognise an instance of a slice without full slicing, or None if we cannot.

    Extension slices are recognised by url (their type profile, or a fixed ``url`` child);
    other slices by their parent's value/pattern discriminators, when the slice fixes a value
    at each discriminator path (looked up under the slice, then with enclosing slice names removed).
    """
    el = elements.get(slice_id, {})
    parent_id, _, _ = slice_id.rpartition(":")
    if parent_id.endswith(("extension", "modifierExtension")):
        profiles = [p for t in el.get("type", []) for p in t.get("profile", [])]
        if profiles:
            return {"url": profiles[0].split("|")[0]}
        url_el = elements.get(slice_id + ".url", {})
        return {"url": url_el.get("fixedUri", slice_id.rsplit(":", 1)[1])}
    slicing = elements.get(parent_id, {}).get("slicing") or elements.get(
        ".".join(n for n, _ in steps(parent_id)), {}).get("slicing")
    if not slicing or not slicing.get("discriminator"):
        return None
    values = []
    for d in slicing["discriminator"]:
        if d["type"] not in ("value", "pattern"):
            return None
        value = discriminator_value(slice_id, d["path"], elements)
        if value is None:
            return None
        values.append([d["path"], value])
    return {"values": values}


def discriminator_value(slice_id: str, path: str, elements: dict[str, Json]) -> Any:
    """The fixed/pattern value a slice sets at a discriminator path, or None."""
    *outer, (last, last_slice) = steps(slice_id)
    unsliced = ".".join(n for n, _ in outer) + f".{last}:{last_slice}"
    suffix = "" if path == "$this" else "." + path
    for cid in (slice_id + suffix, unsliced + suffix):
        for key, value in elements.get(cid, {}).items():
            if key.startswith(("fixed", "pattern")):
                return value
    return None


def main(source: Path = DEFAULT_SOURCE) -> None:
    sds = read_dir(source / "structuredefinitions")
    terminology = r4_terminology() + read_dir(source / "valuesets") + read_dir(source / "codesystems")
    codesystems = {r["url"]: r for r in terminology if r["resourceType"] == "CodeSystem"}
    valuesets = {r["url"]: r for r in terminology if r["resourceType"] == "ValueSet"}

    def expansions(url: str) -> dict[str, list[str]] | None:
        vs = valuesets.get(url)
        return expand(vs, codesystems, valuesets) if vs else None

    by_url = {sd["url"]: sd for sd in sds}
    profiles: Json = {}
    undecidable: list[str] = []
    for sd in sds:
        elements = merged_elements(sd, by_url)
        rules = [r for el in elements.values() if (r := rule_of(el, by_url, expansions))]
        slices: Json = {}
        for eid in elements:
            parts = eid.split(".")
            for i, part in enumerate(parts):
                if ":" in part:
                    sid = ".".join(parts[: i + 1])
                    if sid not in slices:
                        slices[sid] = slice_match(sid, elements)
                        if slices[sid] is None:
                            undecidable.append(f"{sd['id']}: {sid}")
        profiles[sd["url"]] = {
            "id": sd["id"], "name": sd["name"], "version": sd.get("version"), "type": sd["type"],
            "kind": sd["kind"], "base": sd["baseDefinition"], "rules": rules, "slices": slices}
    meta = {"generator": "scripts/generate_ukcore.py",
            "source": f"UK Core R4 STU2 (UKCore.R4.STU.02.00.00), GitHub "
                      f"NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN commit {COMMIT}",
            "licence": "Apache-2.0 (HL7 UK); HL7 FHIR R4 terminology CC0-1.0",
            "undecidableSlices": sorted(undecidable), "sourceDefects": DEFECTS}
    OUT.write_text(json.dumps({"meta": meta, "profiles": profiles}, indent=0, sort_keys=True,
                              ensure_ascii=False))
    n_rules = sum(len(p["rules"]) for p in profiles.values())
    print(f"{len(profiles)} profiles, {n_rules} rules, {len(undecidable)} undecidable slices")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
