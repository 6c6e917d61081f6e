"""Validation against the UK Core profiles the server holds (http://hl7.org/fhir/R4/profiling.html).

The constraints come from ``generated/ukcore.json``, made by ``scripts/generate_ukcore.py`` from
the UK Core R4 STU2 StructureDefinitions (differentials merged along their UK Core base chain).
``validate(resource)`` applies every profile named in ``meta.profile`` (a ``|version`` suffix is
ignored), and the definition of every UK Core extension found anywhere in the resource (an
extension is defined by its url, wherever it is used). Nested resources (contained, Bundle
entries, Parameters) are checked the same way for their own ``meta.profile``. Base R4 rules are
``carerecord.fhir.validation``'s job; run both.

What is applied, at each instance of the constrained element (with its FHIRPath):
cardinality narrower than R4 (``min``/``max``), ``fixed[x]``/``pattern[x]`` values, choice type
restrictions, Reference target types (``targetProfile``, as resource types), required bindings
whose value set could be enumerated (codes of listed systems must be listed), and FHIRPath
invariants (via fhirpathpy; a result of ``false`` fails, an empty result passes).

Slicing is applied without a full slicing engine: extension slices are recognised by url;
other slices only when the parent's discriminators are of type value/pattern and the slice fixes
a value at each discriminator path. Rules under slices that cannot be recognised that way are
skipped (``Profile.skipped``). NOT checked: closed slicing (items matching no slice), slice
order, ``mustSupport``, extensible/preferred bindings, value sets that need a terminology server
(SNOMED CT, all-languages), ``targetProfile`` beyond the resource type, the extension context
(where an extension may be used), core HL7 extensions named by UK Core (their definitions are
not held) and ``type.profile`` on non-extension elements.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import fhirpathpy
import orjson
from fhirpathpy.models import models

from carerecord.errors import Issue

_MISSING = object()
Node = tuple[str, Any, str]  # (FHIRPath, value, JSON key)


class _Step(NamedTuple):
    name: str  # element name, "value[x]" for a choice
    match: tuple[Any, ...] | None  # ("url", u) | ("values", ((path, value), ...)) for a slice


class _Rule(NamedTuple):
    id: str  # element id, e.g. "Patient.identifier:nhsNumber.system"
    steps: tuple[_Step, ...]  # below the root
    min: int
    max: int | None
    fixed: Any
    pattern: Any
    types: frozenset[str] | None  # capitalised type codes allowed for a choice
    targets: frozenset[str] | None
    value_set: str | None
    codes: dict[str, frozenset[str]] | None
    constraints: tuple[tuple[str, str, str, Any], ...]  # (key, severity, human, compiled FHIRPath)


class Profile(NamedTuple):
    """One held profile, compiled for checking."""

    url: str
    id: str
    type: str  # resource type, or "Extension"
    kind: str  # resource | complex-type
    rules: tuple[_Rule, ...]
    skipped: tuple[str, ...]  # rule ids not applied: their slice cannot be recognised


@cache
def _data() -> dict[str, Any]:
    """The parsed ``generated/ukcore.json`` (read once)."""
    raw = resources.files("carerecord.fhir").joinpath("generated/ukcore.json").read_bytes()
    return orjson.loads(raw)  # type: ignore[no-any-return]


def held_profiles() -> frozenset[str]:
    """Canonical URLs of every profile and extension definition the server holds."""
    return frozenset(_data()["profiles"])


@cache
def profile(url: str) -> Profile | None:
    """The compiled profile for a canonical URL (``|version`` ignored), or None if not held."""
    raw = _data()["profiles"].get(url.split("|", 1)[0])
    if raw is None:
        return None
    slices = raw["slices"]
    rules: list[_Rule] = []
    skipped: list[str] = []
    for r in raw["rules"]:
        rule = _compile_rule(r, slices)
        if rule is None:
            skipped.append(r["id"])
        else:
            rules.append(rule)
    return Profile(url.split("|", 1)[0], raw["id"], raw["type"], raw["kind"], tuple(rules),
                   tuple(skipped))


def _compile_rule(r: dict[str, Any], slices: dict[str, Any]) -> _Rule | None:
    """A rule with its steps resolved to slice matchers; None if a slice is not recognisable."""
    parts = r["id"].split(".")
    steps = []
    for i, part in enumerate(parts[1:], start=1):
        name, _, slice_name = part.partition(":")
        match = None
        if slice_name:
            how = slices.get(".".join(parts[: i + 1]))
            if how is None:
                return None
            match = (("url", how["url"]) if "url" in how else
                     ("values", tuple((tuple(p.split(".")), v) for p, v in how["values"])))
        steps.append(_Step(name, match))
    binding = r.get("binding") or {}
    codes = binding.get("codes")
    model = models["r4"]
    return _Rule(
        r["id"], tuple(steps), r.get("min", 0), r.get("max"), r.get("fixed", _MISSING),
        r.get("pattern", _MISSING),
        frozenset(t[0].upper() + t[1:] for t in r["types"]) if "types" in r else None,
        frozenset(r["targets"]) if "targets" in r else None, binding.get("valueSet"),
        {s: frozenset(c) for s, c in codes.items()} if codes else None,
        tuple((c["key"], c["severity"], c["human"], fhirpathpy.compile(c["expression"], model))
              for c in r.get("constraints", ())))


@cache
def _extension_urls() -> frozenset[str]:
    """URLs of the held extension definitions (checked wherever the extension is used)."""
    return frozenset(u for u, p in _data()["profiles"].items() if p["type"] == "Extension")


@cache
def url_prefixes() -> tuple[bytes, ...]:
    """The distinct ``host/path/`` prefixes of every held profile and extension URL."""
    urls = held_profiles() | _extension_urls()
    return tuple(sorted({u.rsplit("/", 1)[0].split("://", 1)[-1].encode() + b"/" for u in urls}))


def may_apply(serialised: bytes) -> bool:
    """False when a resource's JSON names no held profile or extension anywhere, so
    :func:`validate` could only report information issues and its walk can be skipped."""
    return any(prefix in serialised for prefix in url_prefixes())


def validate(resource: dict[str, Any], profiles: Iterable[str] | None = None) -> list[Issue]:
    """Issues of a resource against its held profiles and the UK Core extensions it uses.

    ``profiles`` overrides ``meta.profile`` (e.g. to check an example against the profile it
    illustrates). An unknown profile gives an "information" issue; a profile for another
    resource type, or any broken constraint of severity error, an "error"; invariants of
    severity warning give "warning" issues.
    """
    issues: list[Issue] = []
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(rtype, str):
        _validate_resource(resource, rtype, profiles, issues)
    return issues


def _validate_resource(res: dict[str, Any], path: str, explicit: Iterable[str] | None,
                       issues: list[Issue]) -> None:
    """Apply the resource's profiles (``explicit`` or its ``meta.profile``), then scan below it."""
    if explicit is not None:
        urls = [(u, path) for u in explicit]
    else:
        meta = res.get("meta")
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        urls = [(u, f"{path}.meta.profile[{i}]") for i, u in enumerate(claimed)
                if isinstance(u, str)] if isinstance(claimed, list) else []
    for url, where in urls:
        prof = profile(url)
        if prof is None:
            issues.append(Issue("information", "not-supported", f"Profile {url} is not held by "
                                "this server: its constraints were not checked", (where,)))
        elif prof.kind != "resource" or prof.type != res.get("resourceType"):
            issues.append(Issue("error", "structure", f"Profile {prof.id} constrains {prof.type}, "
                                f"not {res.get('resourceType')}", (where,)))
        else:
            _apply(prof, res, path, issues)
    _scan(res, path, issues)


def _scan(node: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """Find UK Core extensions (checked by their definitions) and nested resources below a node.

    Only objects and arrays are descended into; this runs for every resource written.
    """
    ext_urls = _extension_urls()
    for key, value in node.items():
        kind = type(value)
        if kind is list:
            name = key[1:] if key[0] == "_" else key
            if key == "contained":
                for i, item in enumerate(value):
                    if type(item) is dict:
                        _validate_resource(item, f"{path}.contained[{i}]", None, issues)
                continue
            is_ext = key == "extension" or key == "modifierExtension"
            for i, item in enumerate(value):
                if type(item) is dict:
                    where = f"{path}.{name}[{i}]"
                    if is_ext and item.get("url") in ext_urls:
                        _apply(profile(item["url"]), item, where, issues)  # type: ignore[arg-type]
                    _scan(item, where, issues)
        elif kind is dict:
            name = key[1:] if key[0] == "_" else key
            if type(value.get("resourceType")) is str:
                _validate_resource(value, f"{path}.{name}", None, issues)
            else:
                _scan(value, f"{path}.{name}", issues)


def _apply(prof: Profile, root: dict[str, Any], path: str, issues: list[Issue]) -> None:
    """Every rule of a profile, at every instance of its element below ``root`` (at ``path``).

    Cardinality is counted within each instance of the parent element, so a rule on
    ``Patient.identifier:nhsNumber.value`` applies to each NHS number identifier present.
    """
    for rule in prof.rules:
        if not rule.steps:
            _check_value(prof, rule, (path, root, ""), issues)
            continue
        parents: list[Node] = [(path, root, "")]
        for step in rule.steps[:-1]:
            parents = _descend(parents, step)
        last = rule.steps[-1]
        for ppath, node, _ in parents:
            if isinstance(node, dict):
                _check_count(prof, rule, ppath, node, last, issues)


def _descend(parents: list[Node], step: _Step) -> list[Node]:
    """The nodes one step below each parent object."""
    return [n for ppath, node, _ in parents if isinstance(node, dict) for n in _select(node, ppath, step)]


def _select(node: dict[str, Any], path: str, step: _Step) -> list[Node]:
    """The values of one step below an object (array items flattened), filtered by its slice."""
    name = step.name
    if name.endswith("[x]"):
        stem = name[:-3]
        keys = [k for k in node if k.startswith(stem) and k[len(stem):len(stem) + 1].isupper()]
    else:
        keys = [name] if name in node else []
    out: list[Node] = []
    for k in keys:
        v = node[k]
        if isinstance(v, list):
            out.extend((f"{path}.{k}[{i}]", x, k) for i, x in enumerate(v) if x is not None)
        else:
            out.append((f"{path}.{k}", v, k))
    if step.match is not None:
        out = [n for n in out if _in_slice(n[1], step.match)]
    return out


def _in_slice(value: Any, match: tuple[Any, ...]) -> bool:
    """Whether a value belongs to a slice: by extension url, or by its discriminator values."""
    if match[0] == "url":
        return isinstance(value, dict) and value.get("url") == match[1]
    return all(any(_contains(v, expected) for v in _values_at(value, p)) for p, expected in match[1])


def _values_at(value: Any, path: tuple[str, ...]) -> list[Any]:
    """Values at a dotted discriminator path ("$this" is the value itself), arrays flattened."""
    current = [value]
    for name in path:
        if name == "$this":
            continue
        nxt: list[Any] = []
        for v in current:
            item = v.get(name) if isinstance(v, dict) else None
            nxt.extend(item if isinstance(item, list) else [] if item is None else [item])
        current = nxt
    return current


def _check_count(prof: Profile, rule: _Rule, ppath: str, node: dict[str, Any], last: _Step,
                 issues: list[Issue]) -> None:
    """min/max of the rule's element within one parent object, then each value's own rules."""
    values = _select(node, ppath, last)
    where = (f"{ppath}.{last.name.removesuffix('[x]')}",)
    if len(values) < rule.min:
        issues.append(Issue("error", "required", f"Profile {prof.id}: {rule.id} requires at least "
                            f"{rule.min}, found {len(values)}", where))
    if rule.max is not None and len(values) > rule.max:
        issues.append(Issue("error", "structure", f"Profile {prof.id}: {rule.id} allows at most "
                            f"{rule.max}, found {len(values)}", where))
    for value in values:
        _check_value(prof, rule, value, issues)


def _check_value(prof: Profile, rule: _Rule, value: Node, issues: list[Issue]) -> None:
    """fixed/pattern, choice type, reference target, binding and invariants of one value."""
    vpath, v, key = value
    where = (vpath,)
    if rule.fixed is not _MISSING and v != rule.fixed:
        issues.append(Issue("error", "value", f"Profile {prof.id}: {rule.id} must be exactly "
                            f"{_show(rule.fixed)}, found {_show(v)}", where))
    if rule.pattern is not _MISSING and not _contains(v, rule.pattern):
        issues.append(Issue("error", "value", f"Profile {prof.id}: {rule.id} must match the pattern "
                            f"{_show(rule.pattern)}", where))
    if rule.types is not None and key and key[len(rule.steps[-1].name) - 3:] not in rule.types:
        issues.append(Issue("error", "structure", f"Profile {prof.id}: {rule.id} must be of type "
                            f"{' or '.join(sorted(rule.types))}, found {key}", where))
    if rule.targets is not None and isinstance(v, dict):
        _check_target(prof, rule, vpath, v, issues)
    if rule.codes is not None:
        _check_codes(prof, rule, vpath, v, issues)
    for ckey, severity, human, fn in rule.constraints:
        try:
            result = fn(v)
        except Exception:  # noqa: BLE001 - a FHIRPath the engine cannot run is not checked
            continue
        if result == [False]:
            issues.append(Issue("error" if severity == "error" else "warning", "invariant",
                                f"Profile {prof.id}: constraint {ckey} failed: {human}", where))


def _check_target(prof: Profile, rule: _Rule, vpath: str, ref: dict[str, Any],
                  issues: list[Issue]) -> None:
    """The type of a relative or conditional reference must be one the profile allows."""
    text = ref.get("reference")
    if not isinstance(text, str) or text.startswith(("#", "urn:")) or "://" in text:
        return  # local and absolute references are not resolved here
    rtype = text.split("?", 1)[0].split("/", 1)[0]
    targets = rule.targets or frozenset()
    if rtype not in targets:
        issues.append(Issue("error", "value", f"Profile {prof.id}: reference to {rtype} is not "
                            f"allowed at {rule.id} (allowed: {', '.join(sorted(targets))})",
                            (vpath + ".reference",)))


def _check_codes(prof: Profile, rule: _Rule, vpath: str, v: Any, issues: list[Issue]) -> None:
    """Required binding: a code (any listed system) or codings whose system the value set lists."""
    assert rule.codes is not None
    if isinstance(v, str) and rule.types is not None and not rule.types & {"Code"}:
        return  # a string of a choice that is not a code: the type rule reports it
    if isinstance(v, str):
        if not any(v in codes for codes in rule.codes.values()):
            issues.append(Issue("error", "code-invalid", f"Profile {prof.id}: code '{v}' is not in "
                                f"the required value set {rule.value_set}", (vpath,)))
        return
    if not isinstance(v, dict):
        return
    codings = [(vpath, v)] if "coding" not in v else [
        (f"{vpath}.coding[{i}]", c) for i, c in enumerate(v["coding"] or ()) if isinstance(c, dict)]
    for cpath, coding in codings:
        codes = rule.codes.get(coding.get("system"))  # type: ignore[arg-type]
        if codes is not None and coding.get("code") not in codes:
            issues.append(Issue("error", "code-invalid", f"Profile {prof.id}: code "
                                f"'{coding.get('code')}' from {coding.get('system')} is not in the "
                                f"required value set {rule.value_set}", (cpath + ".code",)))


def _contains(value: Any, pattern: Any) -> bool:
    """pattern[x] semantics: every property of the pattern is present with a matching value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_contains(value.get(k), p) for k, p in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else []
        return all(any(_contains(i, p) for i in items) for p in pattern)
    return bool(value == pattern)


def _show(value: Any) -> str:
    """A value as it appears in messages: quoted strings, JSON otherwise."""
    return orjson.dumps(value).decode() if not isinstance(value, str) else f"'{value}'"
