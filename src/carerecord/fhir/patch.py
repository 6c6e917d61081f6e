"""The two patch formats of the FHIR ``patch`` interaction (http://hl7.org/fhir/R4/http.html#patch).

- JSON Patch, RFC 6902 (https://datatracker.ietf.org/doc/html/rfc6902), applied one operation at a
  time with the ``jsonpatch`` library so that an error can name the operation at fault.
- FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource whose ``operation``
  parameters add, insert, delete, replace or move elements chosen by FHIRPath (evaluated with
  ``fhirpathpy`` and its R4 model, so choice elements such as ``Observation.value`` resolve).

Both return a new dict and never modify their input. Neither validates the result: the caller
validates it like any other write. Both refuse to change ``id``, ``resourceType`` or
``meta.versionId``, which the server owns. Errors are ``Invalid`` (400) when the patch document is
malformed and ``Unprocessable`` (422) when it cannot be applied to this resource; each names the
operation (``Patch.operation[i]`` / ``Parameters.parameter[i]``).

Mapping FHIRPath results back to the JSON tree: complex elements are found by identity, since
fhirpathpy hands back the very dicts of the resource. Primitive values are supported only when the
path ends in a plain element name, optionally indexed (``Patient.birthDate``,
``Patient.name.where(use='official').given[1]``): the part before the last name must select complex
elements, and the name (or its choice variant, e.g. ``deceasedBoolean``) is looked up in each.
Other paths selecting primitives (``given.first()``, ``given.where($this='x')``) are rejected.
``insert`` and ``move`` paths name a list the same way and need exactly one parent element.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch
import jsonpointer
from fhirpathpy import evaluate
from fhirpathpy.models import models as _fhirpath_models

from carerecord.errors import Invalid, Unprocessable
from carerecord.fhir import model
from carerecord.fhir.model import Element

Ptr = tuple[str | int, ...]
_MISSING: Any = object()
_PROTECTED: tuple[Ptr, ...] = (("resourceType",), ("id",), ("meta", "versionId"))
_TAIL = re.compile(r"^(?:(?P<parent>.+)\.)?(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:\[(?P<index>\d+)\])?$")
_R4 = _fhirpath_models["r4"]


def _get(doc: Any, ptr: Ptr) -> Any:
    for seg in ptr:
        try:
            doc = doc[seg]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return doc


def _protected(doc: Any) -> list[Any]:
    values = [_get(doc, ptr) for ptr in _PROTECTED]
    return [v if v is _MISSING else copy.deepcopy(v) for v in values]


def _check_protected(before: list[Any], after: Any, label: str, where: str) -> None:
    """Refuse a change to id, resourceType or meta.versionId (present, absent or different)."""
    for ptr, old in zip(_PROTECTED, before, strict=True):
        if _get(after, ptr) != old:
            name = ".".join(str(s) for s in ptr)
            raise Unprocessable(f"{label}: may not change {name}; the server owns it", where)


def apply_json_patch(resource: dict[str, Any], operations: object) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch to a copy of ``resource`` and return the copy.

    Raises Invalid (400) if ``operations`` is not an array of well-formed operations, and
    Unprocessable (422) if an operation cannot apply (path not found, failed ``test``, index out
    of range) or would change id, resourceType or meta.versionId. The expression is
    ``Patch.operation[i]``.
    """
    if not isinstance(operations, list):
        raise Invalid("A JSON Patch document must be a JSON array of operations", "Patch")
    doc: Any = copy.deepcopy(resource)
    for i, op in enumerate(operations):
        where = f"Patch.operation[{i}]"
        if not isinstance(op, dict):
            raise Invalid(f"JSON Patch operation {i} is not a JSON object", where)
        path = op.get("path")
        label = f"JSON Patch operation {i} ({op.get('op')} {path})"
        before = _protected(doc)
        try:
            doc = jsonpatch.JsonPatch([copy.deepcopy(op)]).apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as e:
            raise Invalid(f"{label}: {e}", where) from e
        except jsonpatch.JsonPatchTestFailed as e:
            raise Unprocessable(f"{label}: test failed, the value at {path} differs", where) from e
        except jsonpatch.JsonPatchPathNotFound as e:
            raise Unprocessable(f"{label}: path not found", where) from e
        except jsonpatch.JsonPatchConflict as e:
            raise Unprocessable(f"{label}: {e}", where) from e
        except jsonpointer.JsonPointerException as e:
            if "must start with" in str(e):
                raise Invalid(f"{label}: {e}", where) from e
            raise Unprocessable(f"{label}: path not found", where) from e
        _check_protected(before, doc, label, where)
    return doc  # type: ignore[no-any-return]


# ---- FHIRPath Patch -------------------------------------------------------------------------
# Helpers raise Invalid/Unprocessable with a bare message; apply_fhirpath_patch adds the
# operation's label and expression.

Kids = dict[str, tuple[Element, str]] | None


def _index(node: Any, ptr: Ptr, out: dict[int, Ptr]) -> dict[int, Ptr]:
    """Map id() of every dict in the tree to its location."""
    if isinstance(node, dict):
        out[id(node)] = ptr
        for k, v in node.items():
            _index(v, (*ptr, k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _index(v, (*ptr, i), out)
    return out


def _kids(doc: dict[str, Any], ptr: Ptr) -> Kids:
    """Child elements (R4 model) of the element at ``ptr``, or None if its type is unknown."""
    node: Any = doc
    t = doc.get("resourceType")
    for seg in ptr:
        node = node[seg]
        if isinstance(seg, str):
            kids = model.children(t) if isinstance(t, str) else None
            t = kids[seg][1] if kids and seg in kids else None
        if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
            t = node["resourceType"]
    return model.children(t) if isinstance(t, str) else None


def _evaluate(doc: dict[str, Any], expr: str) -> list[Any]:
    try:
        nodes = evaluate(doc, expr, {}, _R4, {"returnRawData": True})
    except Exception as e:  # fhirpathpy raises bare Exceptions for bad expressions
        raise Invalid(f"cannot evaluate FHIRPath: {e}") from e
    return [getattr(n, "data", n) for n in nodes]


def _parents(doc: dict[str, Any], expr: str | None) -> list[Ptr]:
    if expr is None:
        return [()]
    index = _index(doc, (), {})
    found = _evaluate(doc, expr)
    if not all(isinstance(v, dict) and id(v) in index for v in found):
        raise Unprocessable(f"'{expr}' must select complex elements")
    return [index[id(v)] for v in found]


def _child_key(parent: dict[str, Any], name: str, kids: Kids) -> str | None:
    """The JSON key of element ``name`` in ``parent``: the name itself or its choice variant."""
    if name in parent:
        return name
    for k in parent:
        if k.startswith(name) and k[len(name):][:1].isupper() and (
                kids is None or (k in kids and kids[k][0].name == f"{name}[x]")):
            return k
    return None


def _select(doc: dict[str, Any], expr: str) -> list[Ptr]:
    """Locations of the elements ``expr`` selects (see the module docstring for the subset)."""
    index = _index(doc, (), {})
    found = _evaluate(doc, expr)
    if all(isinstance(v, dict) and id(v) in index for v in found):
        return [index[id(v)] for v in found]
    m = _TAIL.match(expr.strip())
    if not m:
        raise Unprocessable("unsupported path; a path selecting primitive values must end in an "
                            "element name, optionally with an [index]")
    items: list[Ptr] = []
    for pp in _parents(doc, m["parent"]):
        parent = _get(doc, pp)
        key = _child_key(parent, m["name"], _kids(doc, pp))
        if key is not None:
            value = parent[key]
            items += [(*pp, key, i) for i in range(len(value))] if isinstance(value, list) else [(*pp, key)]
    if m["index"] is not None:
        items = items[int(m["index"]):][:1]
    if len(items) != len(found):
        raise Unprocessable("unsupported path; cannot locate its values in the resource")
    return items


def _one(ptrs: list[Ptr], kind: str) -> Ptr:
    if len(ptrs) != 1:
        raise Unprocessable(f"the path matched {len(ptrs)} elements; {kind} needs exactly one")
    return ptrs[0]


def _shadow(parent: dict[str, Any], key: str, length: int) -> list[Any] | None:
    """The ``_key`` list of primitive extensions aligned with list ``key``, if there is one."""
    sh = parent.get(f"_{key}")
    return sh if isinstance(sh, list) and len(sh) == length else None


def _assemble(parts: object, kids: Kids) -> dict[str, Any]:
    """Build a complex value from ``name``/``value[x]`` parts, nesting parts of parts."""
    if not isinstance(parts, list):
        raise Invalid("value parts must be a list")
    out: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise Invalid("each value part needs a name")
        key, value, element = _content(part, kids, part["name"])
        if key in out or (element is not None and element.repeats):
            prior = out.get(key, [])
            out[key] = [*(prior if isinstance(prior, list) else [prior]), value]
        else:
            out[key] = value
    return out


def _content(part: dict[str, Any] | None, kids: Kids, name: str) -> tuple[str, Any, Element | None]:
    """(JSON key, value, model element) for element ``name`` given as ``value[x]`` or parts."""
    if part is None:
        raise Invalid("needs a 'value' part")
    value_keys = [k for k in part if k.startswith("value")]
    if not value_keys and "part" in part:
        entry = kids.get(name) if kids else None
        sub = model.children(entry[1]) if entry else None
        return name, _assemble(part["part"], sub), entry[0] if entry else None
    if len(value_keys) != 1:
        raise Invalid("a value needs exactly one value[x] or a list of parts")
    key = name + value_keys[0][5:]
    if not (kids and key in kids and kids[key][0].name == f"{name}[x]"):
        key = name
    entry = kids.get(key) if kids else None
    return key, copy.deepcopy(part[value_keys[0]]), entry[0] if entry else None


def _arg(parts: dict[str, dict[str, Any]], name: str, kind: type[str] | type[int]) -> Any:
    values = [v for k, v in parts.get(name, {}).items() if k.startswith("value")]
    if len(values) != 1 or not isinstance(values[0], kind) or isinstance(values[0], bool) \
            or (isinstance(values[0], int) and values[0] < 0):
        raise Invalid(f"the '{name}' part must be a {'non-negative integer' if kind is int else 'string'}")
    return values[0]


def _add(doc: dict[str, Any], parts: dict[str, dict[str, Any]]) -> None:
    ptr = _one(_select(doc, _arg(parts, "path", str)), "add")
    target = _get(doc, ptr)
    if not isinstance(target, dict):
        raise Unprocessable("add needs a path to a complex element")
    key, new, element = _content(parts.get("value"), _kids(doc, ptr), _arg(parts, "name", str))
    prior = target.get(key, _MISSING)
    if (element is not None and element.repeats) or isinstance(prior, list):
        target[key] = [*(prior if isinstance(prior, list) else [] if prior is _MISSING else [prior]), new]
    elif prior is not _MISSING:
        raise Unprocessable(f"{key} already exists and does not repeat; use replace")
    else:
        target[key] = new


def _insert_or_move(doc: dict[str, Any], parts: dict[str, dict[str, Any]], kind: str) -> None:
    m = _TAIL.match(_arg(parts, "path", str).strip())
    if not m or m["index"] is not None:
        raise Unprocessable("the path must end in the name of a repeating element")
    parents = _parents(doc, m["parent"])
    if len(parents) != 1:
        raise Unprocessable(f"the list's parent matched {len(parents)} elements; {kind} needs exactly one")
    pp = parents[0]
    parent, key = _get(doc, pp), m["name"]
    items = parent.get(key, [])
    if not isinstance(items, list):
        raise Unprocessable(f"{key} is not a list")
    shadow = _shadow(parent, key, len(items))
    if kind == "insert":
        index: int = _arg(parts, "index", int)
        if index > len(items):
            raise Unprocessable(f"index {index} is beyond the {len(items)} items")
        items.insert(index, _content(parts.get("value"), _kids(doc, pp), key)[1])
        parent[key] = items
        if shadow is not None:
            shadow.insert(index, None)
        return
    src: int = _arg(parts, "source", int)
    dst: int = _arg(parts, "destination", int)
    if max(src, dst) >= len(items):
        raise Unprocessable(f"source and destination must be below {len(items)}")
    for seq in [items] if shadow is None else [items, shadow]:
        seq.insert(dst, seq.pop(src))


def _replace(doc: dict[str, Any], parts: dict[str, dict[str, Any]]) -> None:
    ptr = _one(_select(doc, _arg(parts, "path", str)), "replace")
    if not ptr:
        raise Unprocessable("cannot replace the resource itself")
    if isinstance(ptr[-1], int):  # an item of a list: lists are never choice elements
        new = _content(parts.get("value"), _kids(doc, ptr[:-2]), str(ptr[-2]))[1]
        _get(doc, ptr[:-1])[ptr[-1]] = new
        return
    parent, old, kids = _get(doc, ptr[:-1]), ptr[-1], _kids(doc, ptr[:-1])
    stem = kids[old][0].name.removesuffix("[x]") if kids and old in kids else old
    key, new, _ = _content(parts.get("value"), kids, stem)
    entries = [(key, new) if k == old else (k, v) for k, v in parent.items()]  # keep the key order
    parent.clear()
    parent.update(entries)


def _delete(doc: dict[str, Any], parts: dict[str, dict[str, Any]]) -> None:
    """Remove the one element selected (if any), its primitive extensions, and emptied parents."""
    ptrs = _select(doc, _arg(parts, "path", str))
    if len(ptrs) > 1:
        raise Unprocessable(f"the path matched {len(ptrs)} elements; delete removes only one")
    if ptrs == [()]:
        raise Unprocessable("cannot delete the resource itself")
    ptr = ptrs[0] if ptrs else ()
    while ptr:
        container, key = _get(doc, ptr[:-1]), ptr[-1]
        if isinstance(key, int):
            grand = _get(doc, ptr[:-2])
            shadow = _shadow(grand, str(ptr[-2]), len(container))
            container.pop(key)
            if shadow is not None:
                shadow.pop(key)
                if all(s is None for s in shadow):
                    del grand[f"_{ptr[-2]}"]
        else:
            del container[key]
            container.pop(f"_{key}", None)
        ptr = ptr[:-1]
        if _get(doc, ptr):
            break


def _operation(doc: dict[str, Any], parts: dict[str, dict[str, Any]]) -> None:
    """Apply one FHIRPath Patch operation to ``doc`` in place."""
    kind = _arg(parts, "type", str)
    if kind == "add":
        _add(doc, parts)
    elif kind in ("insert", "move"):
        _insert_or_move(doc, parts, kind)
    elif kind == "replace":
        _replace(doc, parts)
    elif kind == "delete":
        _delete(doc, parts)
    else:
        raise Invalid(f"unknown operation type '{kind}'")


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch (a Parameters resource) to a copy of ``resource``; return the copy.

    Operations apply in order. ``add`` and ``replace`` need their path to select exactly one
    element, ``insert`` and ``move`` exactly one parent of the named list; ``delete`` of nothing
    is a no-op. Raises Invalid (400) for a malformed Parameters and Unprocessable (422) for one
    that cannot apply here; the expression is ``Parameters.parameter[i]``.
    """
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise Invalid("A FHIRPath Patch must be a Parameters resource", "Parameters")
    operations = parameters.get("parameter", [])
    if not isinstance(operations, list):
        raise Invalid("Parameters.parameter must be a list", "Parameters.parameter")
    doc = copy.deepcopy(resource)
    for i, op in enumerate(operations):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(op, dict) or op.get("name") != "operation" or not isinstance(op.get("part"), list):
            raise Invalid(f"FHIRPath Patch parameter {i} must be an 'operation' with parts", where)
        parts = {p["name"]: p for p in op["part"] if isinstance(p, dict) and isinstance(p.get("name"), str)}
        if len(parts) != len(op["part"]):
            raise Invalid(f"FHIRPath Patch operation {i} has a repeated or unnamed part", where)
        shown = [next((v for k, v in parts.get(n, {}).items() if k.startswith("value")), None)
                 for n in ("type", "path")]
        label = f"FHIRPath Patch operation {i} ({shown[0]} {shown[1]})"
        before = _protected(doc)
        try:
            _operation(doc, parts)
        except Invalid as e:  # Unprocessable too: keep the class, add where it happened
            raise type(e)(f"{label}: {e.message}", where) from e
        _check_protected(before, doc, label, where)
    return doc
