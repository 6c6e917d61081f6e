"""Write-time validation of FHIR R4 resources against the base specification.

``validate(resource)`` walks a resource in its JSON form (http://hl7.org/fhir/R4/json.html) and
returns every problem as an ``Issue`` whose ``expression`` is the FHIRPath of the element at fault,
with indexes (``Observation.component[1].code.coding[0].system``). Everything is driven by the
generated element model (``carerecord.fhir.model``, from the official StructureDefinitions,
http://hl7.org/fhir/R4/elementdefinition.html); nothing is written per resource type:

* the resource type is a known concrete type; every property is an element of its type
  (``_x`` companions only for primitives); choice elements ``value[x]`` appear at most once;
* cardinality: required elements present, repeating elements are JSON arrays and single ones are not;
* JSON rules: no ``null`` (except inside primitive arrays paired with a ``_x`` companion), no empty
  strings, objects or arrays; strings not only whitespace; ``_x`` arrays as long as ``x``
  (json.html#primitive);
* primitive JSON types and formats (``primitive_checks``), including real calendar dates;
* required bindings (terminologies.html#required): a ``code`` must be in the expansion; a Coding
  (or CodeableConcept coding) whose system the expansion lists must use one of its codes;
  value sets the definitions cannot enumerate are skipped;
* references (references.html): ``Type/id`` must name an allowed target type, ``#id`` a contained
  resource; ``urn:uuid:``/``urn:oid:`` and absolute URLs are accepted without a target check (they
  are resolved by the transaction or the store, not here); conditional references ``Type?query``
  are checked for their type only; any other string cannot be resolved and gets a *warning*;
* contained resources (references.html#contained): an id, no nested ``contained``, no
  ``meta.versionId``/``lastUpdated`` (dom-2, dom-4), unique ids, and each referenced from the
  container (dom-3); they are validated recursively, as are other nested resources
  (``Bundle.entry.resource``, ``Parameters.parameter.resource``);
* Narrative ``div`` is a ``<div`` fragment without ``<script`` (narrative.html);
* Extension has a url and either a value or nested extensions, not both (ext-1);
* NHS numbers: an Identifier with system ``https://fhir.nhs.uk/Id/nhs-number`` has a 10-digit value
  passing the Modulus 11 check (NHS Data Dictionary, "NHS Number").

Not checked here: the other FHIRPath invariants of the specification (e.g. ``obs-6``, ``bdl-7``),
extensible or preferred bindings, terminology that needs a terminology server (SNOMED CT, LOINC,
UCUM, BCP-47), that references resolve to existing resources or that ``Reference.type`` agrees
with the reference, canonical targets, the XHTML content model and namespace of the narrative
beyond the outer element and script, duplicate JSON keys (lost by the parser), the precision of
decimals, and profiles (see ``carerecord.fhir.profiles``).
"""

from __future__ import annotations

from functools import cache

from carerecord.errors import Issue, Unprocessable
from carerecord.fhir import model
from carerecord.fhir.primitive_checks import checker, json_kind
from carerecord.fhir.validation_rules import POST_CHECKS, Context

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2
_SIMPLE_PRIMITIVE, _SINGLE_OBJECT, _OTHER = 0, 1, 2  # fast-path dispatch of _walk


class _Field:
    """One JSON property of a type, precompiled for the walk."""

    __slots__ = ("key", "name", "type", "kind", "repeats", "max", "check", "choice", "codes",
                 "value_set", "binding", "targets", "post", "canonical", "slow", "table", "mode")

    def __init__(self, key: str, el: model.Element, type_code: str, is_resource_root: bool) -> None:
        self.key = key
        self.name = el.name
        self.type = type_code
        self.repeats = el.repeats
        self.max = el.max
        self.choice = el.name if el.name.endswith("[x]") else None
        self.binding = el.binding
        self.targets = (None if el.targets is None or "Resource" in el.targets
                        else frozenset(el.targets))
        self.canonical = type_code == "canonical"
        self.codes: frozenset[str] | None = None
        self.value_set: dict[str, frozenset[str]] | None = None
        self.table: _Table | None = None  # resolved on first use (types are recursive)
        if type_code == "Resource":
            self.kind = RESOURCE
        elif model.is_primitive(type_code):
            self.kind = PRIMITIVE
            # Resource.id is an ``id`` (resource.html#id); the R4 definitions type it System.String.
            self.check = checker("id" if key == "id" and is_resource_root else type_code)
        else:
            self.kind = COMPLEX
        expansion = model.value_set(el.binding) if el.binding else None
        if expansion is not None:
            if type_code == "code":
                self.codes = frozenset().union(*expansion.values())
            elif type_code in ("Coding", "CodeableConcept"):
                self.value_set = expansion
        self.slow = self.codes is not None or self.canonical  # needs more than the format check
        self.post = POST_CHECKS.get(type_code)
        if type_code in ("Coding", "CodeableConcept") and self.value_set is None:
            self.post = None
        if self.repeats:
            self.mode = _OTHER
        elif self.kind == PRIMITIVE and not self.slow:
            self.mode = _SIMPLE_PRIMITIVE
        elif self.kind == COMPLEX:
            self.mode = _SINGLE_OBJECT
        else:
            self.mode = _OTHER

    def resolve(self) -> _Table:
        """The table of this field's complex type, cached on the field."""
        self.table = _table(self.type)
        return self.table


class _Table:
    """The compiled children of one type: fields by JSON key and the required elements."""

    __slots__ = ("name", "fields", "required", "is_resource")

    def __init__(self, name: str, fields: dict[str, _Field],
                 required: list[tuple[str, frozenset[str]]], is_resource: bool) -> None:
        self.name = name
        self.fields = fields
        self.required = required
        self.is_resource = is_resource


@cache
def _table(type_name: str) -> _Table:
    """The compiled table of a complex type, backbone path or resource type (cached)."""
    kids = model.children(type_name)
    if kids is None:
        raise KeyError(f"type {type_name} is not in the model")
    is_resource = type_name in model.resource_types()
    fields = {key: _Field(key, el, t, is_resource) for key, (el, t) in kids.items()}
    keys_of: dict[str, list[str]] = {}
    for key, f in fields.items():
        if f.kind == PRIMITIVE:
            keys_of.setdefault(f.name, []).extend((key, "_" + key))
        else:
            keys_of.setdefault(f.name, []).append(key)
    required = [(name.removesuffix("[x]"), frozenset(keys_of[name]))
                for name, (el, _) in {el.name: (el, t) for el, t in kids.values()}.items()
                if el.min >= 1]
    return _Table(type_name, fields, required, is_resource)


def validate(resource: object) -> list[Issue]:
    """All problems of a resource against the base R4 specification, in document order.

    Returns an empty list for a valid resource. Issues of severity "error" mean the resource
    must be rejected. Never raises for bad input: a non-object gives a single issue.
    """
    issues: list[Issue] = []
    _resource(resource, "", None, issues)
    return issues


def require_valid(resource: object) -> None:
    """Raise ``Unprocessable`` carrying every error issue if the resource is not valid."""
    errors = [i for i in validate(resource) if i.severity in ("error", "fatal")]
    if errors:
        raise Unprocessable.of(errors)


def _resource(obj: object, path: str, container: Context | None, issues: list[Issue]) -> None:
    """Validate a resource at ``path`` ("" for the root); ``container`` is set for contained ones."""
    where = (path,) if path else ()
    if type(obj) is not dict:
        issues.append(Issue("error", "structure", f"A resource must be a JSON object, found "
                                                  f"{json_kind(obj)}", where))
        return
    rtype = obj.get("resourceType")
    if rtype is None:
        issues.append(Issue("error", "required", "Missing resourceType", where))
        return
    if type(rtype) is not str or rtype not in model.resource_types():
        issues.append(Issue("error", "structure",
                            f"Unknown resource type '{rtype}': not a concrete FHIR R4 resource type",
                            where))
        return
    path = path or rtype
    if container is not None:
        _walk(obj, _table(rtype), path, container)
        return
    contained = obj.get("contained")
    ids = _contained_ids(contained, path, issues) if type(contained) is list else frozenset()
    ctx = Context(issues, ids)
    _walk(obj, _table(rtype), path, ctx)
    if ids:
        for i, item in enumerate(contained):  # type: ignore[arg-type]
            cid = item.get("id") if type(item) is dict else None
            if cid in ids and cid not in ctx.local_refs and cid not in ctx.self_refs:
                ctx.error("invariant", f"Contained resource '{cid}' is not referenced from the "
                          "containing resource (dom-3)", f"{path}.contained[{i}]")


def _contained_ids(contained: list[object], path: str, issues: list[Issue]) -> frozenset[str]:
    """Ids of contained resources, reporting contained resources that break dom-2/dom-4/ids."""
    seen: set[str] = set()
    for i, item in enumerate(contained):
        if type(item) is not dict:
            continue
        where = (f"{path}.contained[{i}]",)
        cid = item.get("id")
        if cid is None:
            issues.append(Issue("error", "required", "A contained resource must have an id", where))
        elif cid in seen:
            issues.append(Issue("error", "invariant", f"Duplicate contained resource id '{cid}'",
                                where))
        elif type(cid) is str:
            seen.add(cid)
        if "contained" in item:
            issues.append(Issue("error", "invariant", "A contained resource must not contain "
                                "resources (dom-2)", where))
        meta = item.get("meta")
        if type(meta) is dict and ("versionId" in meta or "lastUpdated" in meta):
            issues.append(Issue("error", "invariant", "A contained resource must not have "
                                "meta.versionId or meta.lastUpdated (dom-4)", where))
    return frozenset(seen)


def _walk(obj: dict[str, object], table: _Table, path: str, ctx: Context) -> None:
    """Check every property of an object of the table's type, then its required elements.

    The common cases (a valid primitive, a non-empty object, a non-empty array) are dispatched
    inline by the field's precomputed ``mode`` and a primitive's path string is only built for an
    issue: this loop runs for every element of every resource written.
    """
    fields = table.fields
    choices: dict[str, str] | None = None
    for key, value in obj.items():
        f = fields.get(key)
        if f is None:
            _odd_key(obj, key, value, table, path, ctx)
            continue
        if f.choice is not None:
            choices = _choice(choices, f, key, path, ctx)
        mode = f.mode
        if mode == _SIMPLE_PRIMITIVE:
            if f.check(value) is None:
                continue
        elif mode == _SINGLE_OBJECT:
            if type(value) is dict and value:
                child = path + "." + key
                _walk(value, f.table or f.resolve(), child, ctx)
                if f.post is not None:
                    f.post(f, value, child, ctx)
                continue
        elif type(value) is list and value and f.repeats:
            _list(f, value, obj, path + "." + key, ctx)
            continue
        _property(f, key, value, path + "." + key, ctx)
    for name, keys in table.required:
        if obj.keys().isdisjoint(keys):
            ctx.error("required", f"Missing required element {name} of {table.name}",
                      f"{path}.{name}")


def _choice(choices: dict[str, str] | None, f: _Field, key: str, path: str,
            ctx: Context) -> dict[str, str]:
    """Record a choice element's key; a second key of the same choice is an issue."""
    if choices is None:
        return {f.choice: key}  # type: ignore[dict-item]
    if f.choice in choices:
        ctx.error("structure", f"Only one of {f.choice} is allowed, found {choices[f.choice]} "
                  f"and {key}", path + "." + key)
    else:
        choices[f.choice] = key  # type: ignore[index]
    return choices


def _property(f: _Field, key: str, value: object, path: str, ctx: Context,
              in_list: bool = False) -> None:
    """The general (slower) check of one property or array item, for uncommon shapes and issues."""
    if value is None:
        ctx.error("structure", "null is not allowed (omit the element instead)", path)
    elif f.repeats and not in_list:
        if type(value) is not list:
            ctx.error("structure", f"Element {key} repeats: its value must be a JSON array", path)
        elif not value:
            ctx.error("structure", "Empty arrays are not allowed (omit the element instead)", path)
    elif type(value) is list:
        ctx.error("structure", "An array must not contain arrays" if in_list else
                  f"Element {key} does not repeat: its value must not be an array", path)
    else:
        _value(f, value, path, ctx)


def _list(f: _Field, value: list[object], obj: dict[str, object], path: str, ctx: Context) -> None:
    """The items of a repeating element (a non-empty JSON array)."""
    if 1 < f.max < len(value):
        ctx.error("structure", f"At most {f.max} {f.key} allowed, found {len(value)}", path)
    if f.kind == COMPLEX:
        table, post = f.table or f.resolve(), f.post
        for i, item in enumerate(value):
            child = f"{path}[{i}]"
            if type(item) is dict and item:
                _walk(item, table, child, ctx)
                if post is not None:
                    post(f, item, child, ctx)
            else:
                _property(f, f.key, item, child, ctx, in_list=True)
        return
    if f.kind == RESOURCE:
        for i, item in enumerate(value):
            _property(f, f.key, item, f"{path}[{i}]", ctx, in_list=True)
        return
    check, slow = f.check, f.slow
    for i, item in enumerate(value):
        if item is None:
            companion = obj.get("_" + f.key)
            if not (type(companion) is list and i < len(companion) and companion[i] is not None):
                ctx.error("structure", "null is not allowed in an array unless the "
                          f"_{f.key} companion has an entry for it", f"{path}[{i}]")
        elif slow or check(item) is not None:
            _primitive(f, item, f"{path}[{i}]", ctx)


_NUMERIC = ("integer", "unsignedInt", "positiveInt", "decimal", "integer64")


def _json_type_ok(type_code: str, value: object) -> bool:
    """Whether ``value`` has the JSON type FHIR JSON uses for ``type_code`` (json.html#primitive)."""
    if type_code == "boolean":
        return type(value) is bool
    if type_code in _NUMERIC:
        return type(value) in (int, float)
    return type(value) is str


def _primitive(f: _Field, value: object, path: str, ctx: Context) -> None:
    """The full check of one primitive value: format, then required binding, then local refs."""
    msg = f.check(value)
    if msg is not None:
        # A value of the wrong JSON type is not well-formed FHIR (structure, 400); a value of
        # the right type in the wrong format is an invalid value (value, 422).
        ctx.error("structure" if not _json_type_ok(f.type, value) else "value", msg, path)
    elif f.codes is not None and value not in f.codes:
        ctx.error("code-invalid", f"Code '{value}' is not in the required value set {f.binding}", path)
    elif f.canonical and value[:1] == "#":  # type: ignore[index]
        ctx.local_refs.add(value[1:])  # type: ignore[index]


def _odd_key(obj: dict[str, object], key: str, value: object, table: _Table, path: str,
             ctx: Context) -> None:
    """A key that is not an element: resourceType, a ``_x`` companion, or an unknown element."""
    if key == "resourceType" and table.is_resource:
        return
    if key[:1] == "_":
        base = table.fields.get(key[1:])
        if base is not None and base.kind == PRIMITIVE:
            _companion(base, value, obj.get(base.key), path + "." + key[1:], ctx)
            return
        if base is not None:
            ctx.error("structure", f"'{key}' is only allowed for primitive elements", path + "." + key)
            return
    ctx.error("structure", f"Unknown element '{key}' for {table.name}", path + "." + key)


def _companion(base: _Field, value: object, primitive: object, path: str, ctx: Context) -> None:
    """The ``_x`` object (or array of objects/nulls) carrying a primitive's id and extensions.

    An array companion must be as long as the primitive array it annotates (json.html#primitive).
    """
    if base.repeats:
        if type(value) is not list:
            ctx.error("structure", f"_{base.key} must be a JSON array like {base.key}", path)
            return
        if type(primitive) is list and len(primitive) != len(value):
            ctx.error("structure", f"_{base.key} must have as many items as {base.key} "
                      f"({len(value)} != {len(primitive)})", path)
        for i, item in enumerate(value):
            if item is not None:
                _element(item, f"{path}[{i}]", ctx)
    elif type(value) is list:
        ctx.error("structure", f"_{base.key} must not be an array", path)
    else:
        _element(value, path, ctx)


def _element(value: object, path: str, ctx: Context) -> None:
    if value is None:
        ctx.error("structure", "null is not allowed (omit the element instead)", path)
    elif type(value) is not dict:
        ctx.error("structure", f"Expected a JSON object, found {json_kind(value)}", path)
    elif not value:
        ctx.error("structure", "Empty objects are not allowed (omit the element instead)", path)
    else:
        _walk(value, _table("Element"), path, ctx)


def _value(f: _Field, value: object, path: str, ctx: Context) -> None:
    """Check one non-null value of a field."""
    kind = f.kind
    if kind == COMPLEX:
        if type(value) is not dict:
            ctx.error("structure", f"Expected a JSON object for {f.type}, found {json_kind(value)}",
                      path)
        elif not value:
            ctx.error("structure", "Empty objects are not allowed (omit the element instead)", path)
        else:
            _walk(value, f.table or f.resolve(), path, ctx)
            if f.post is not None:
                f.post(f, value, path, ctx)
    elif kind == PRIMITIVE:
        _primitive(f, value, path, ctx)
    else:
        _nested_resource(f, value, path, ctx)


def _nested_resource(f: _Field, value: object, path: str, ctx: Context) -> None:
    if f.name != "contained":
        _resource(value, path, None, ctx.issues)
        return
    outer = ctx.current
    ctx.current = value.get("id") if type(value) is dict else None  # type: ignore[assignment]
    _resource(value, path, ctx, ctx.issues)
    ctx.current = outer
