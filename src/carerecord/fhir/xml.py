"""FHIR R4 XML, converted to and from the FHIR JSON representation.

Spec: http://hl7.org/fhir/R4/xml.html (XML format) and http://hl7.org/fhir/R4/json.html (JSON
format). The rest of the server works on JSON-shaped dicts, so XML is turned into exactly the dict
a client would have sent as JSON, and back. The conversion is driven by the generated element
model (``carerecord.fhir.model``): it decides which elements repeat (JSON arrays), which are
primitives (a ``value`` attribute in XML; ``id``/``extension`` of a primitive go to the JSON
``_name`` companion), which are nested resources (wrapped in their resource name in XML, given
``resourceType`` in JSON) and the declaration order that XML requires (``elementOrder`` in
``generated/model.json``). ``Element.id`` and ``Extension.url`` are XML attributes (their
ElementDefinition.representation is ``xmlAttr``); ``Narrative.div`` is XHTML, kept as a string.

Nothing is dropped silently: an element the model does not know, text content where FHIR has
none, or a value JSON cannot carry raises ``Invalid``; checking the content against the profiles
is the validator's job. Parsing is hardened against XML attacks: no DTD is loaded, no entity is
resolved, nothing is fetched from the network, and any document with a DOCTYPE is refused.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from decimal import Decimal
from functools import cache
from operator import attrgetter
from typing import Any, NamedTuple

from lxml import etree

from carerecord.errors import Invalid
from carerecord.fhir import model

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_DIV = "{" + XHTML_NS + "}div"
_EXTENSION = _F + "extension"

_PRIM, _COMPLEX, _RESOURCE, _XHTML, _ATTR = range(5)
_INTEGERS = frozenset({"integer", "unsignedInt", "positiveInt"})
_TYPED = _INTEGERS | {"boolean", "decimal"}  # primitives whose JSON form is not a string
_INT_RX = re.compile(r"-?(0|[1-9][0-9]*)")  # what a JSON number without fraction can say
_DEC_RX = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # FHIR decimal = JSON number


class _Slot(NamedTuple):
    """How one JSON property of a type is written in XML."""

    key: str  # JSON property name (= XML element or attribute name)
    kind: int  # _PRIM, _COMPLEX, _RESOURCE, _XHTML or _ATTR
    type: str  # concrete FHIR type, or a backbone path such as "Patient.contact"
    repeats: bool
    rank: int  # position in the StructureDefinition's declaration order
    tag: str  # qualified XML tag of the element
    typed: bool  # a primitive whose JSON form is not a string (boolean, integers, decimal)


@cache
def _slots(type_name: str) -> dict[str, _Slot]:
    """JSON property name -> slot for a resource, data type or backbone path."""
    kids = model.children(type_name)
    if kids is None:
        raise KeyError(f"no element table for FHIR type {type_name!r}")
    order = {name: i for i, name in enumerate(model.element_order(type_name))}
    is_resource = type_name in model.resource_types()
    out: dict[str, _Slot] = {}
    for key, (el, t) in kids.items():
        if (key == "id" and not is_resource) or (key == "url" and type_name == "Extension"):
            kind = _ATTR
        elif t == "xhtml":
            kind = _XHTML
        elif t == "Resource":
            kind = _RESOURCE
        elif model.is_primitive(t):
            kind = _PRIM
        else:
            kind = _COMPLEX
        tag = _DIV if kind == _XHTML else _F + key
        out[key] = _Slot(key, kind, t, el.repeats, order[el.name] * 64 + el.types.index(t), tag,
                         t in _TYPED)
    return out


@cache
def _tags(type_name: str) -> dict[str, _Slot]:
    """Qualified XML tag -> slot, for the child elements (not attributes) of a type."""
    return {s.tag: s for s in _slots(type_name).values() if s.kind != _ATTR}


_DOCTYPE_MARKERS = tuple("<!DOCTYPE".encode(enc) for enc in ("utf-8", "utf-16-le", "utf-16-be"))
_RANK = attrgetter("rank")
_ID_SLOT = _Slot("id", _ATTR, "string", False, 0, "id", False)  # Element.id
_EXT_SLOT = _Slot("extension", _COMPLEX, "Extension", True, 64, _EXTENSION, False)  # Element.extension
_per_thread = threading.local()


def _parser() -> etree.XMLParser:
    """The hardened parser, one per thread (lxml parsers must not be shared between threads)."""
    parser = getattr(_per_thread, "parser", None)
    if parser is None:
        parser = _per_thread.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True, remove_pis=True)
    return parser


def _parse_secure(data: bytes, what: str) -> etree._Element:
    """Parse untrusted bytes; refuse malformed XML and any DOCTYPE (so no entity ever expands)."""
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        if any(marker in data for marker in _DOCTYPE_MARKERS):
            raise Invalid("DOCTYPE is not allowed in FHIR XML") from None
        raise Invalid(f"Malformed {what} (line {e.lineno}): {e.msg}") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise Invalid("DOCTYPE is not allowed in FHIR XML")
    return root


# --- XML -> JSON ------------------------------------------------------------------------------

def parse_xml(data: bytes) -> dict[str, Any]:
    """Convert one FHIR XML resource to its FHIR JSON form, as a dict.

    Contract: returns what the same resource sent as JSON would have parsed to, with
    ``resourceType`` first; raises ``Invalid`` for malformed XML, a DOCTYPE, a root that is not a
    FHIR resource, elements or attributes the R4 model does not define (expression names the
    element, diagnostics give the line), text where FHIR has none, and primitive values that
    have no JSON form (e.g. ``value="yes"`` on a boolean). Profile rules are not checked here.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    root = _parse_secure(bytes(data), "XML")
    tag = root.tag
    if not isinstance(tag, str) or not tag.startswith(_F):
        raise Invalid(f"Root element {etree.QName(root).localname!r} is not in the FHIR namespace "
                      f"{FHIR_NS} (line {root.sourceline})")
    name = tag[len(_F):]
    if name not in model.resource_types():
        raise Invalid(f"Root element {name!r} is not a FHIR resource type", name)
    try:
        return _resource(root, name)
    except RecursionError:
        raise Invalid("XML is nested too deeply") from None


def _resource(el: etree._Element, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": name}
    _fill(el, name, out)
    return out


def _fill(el: etree._Element, type_name: str, out: dict[str, Any]) -> None:
    """Add the attributes and child elements of ``el`` (of FHIR type ``type_name``) to ``out``.

    The hot path of parsing: the common primitive (only a ``value`` attribute) is handled inline.
    """
    attrs = el.items()
    if attrs:
        slots = _slots(type_name)
        for name, attr_value in attrs:
            slot = slots.get(name)
            if slot is not None and slot.kind == _ATTR:
                out[name] = attr_value
            elif not _foreign(name):
                raise _unknown(el, f"attribute {name!r}", _where(el) + "." + name)
    text = el.text
    if text and not text.isspace():
        raise _text_error(el)
    tags = _tags(type_name)
    comps: dict[str, list[dict[str, Any] | None]] | None = None
    for child in el:
        slot = tags.get(child.tag)
        if slot is None:
            raise _unknown(child, "element", _where(child))
        tail = child.tail
        if tail and not tail.isspace():
            raise _text_error(el)
        key, kind = slot.key, slot.kind
        if kind == _PRIM:
            attrs = child.items()
            if len(attrs) == 1 and attrs[0][0] == "value" and not len(child) and child.text is None:
                raw = attrs[0][1]
                value: Any = _typed(raw, slot.type, child) if slot.typed else raw
                comp = None
            else:
                value, comp = _primitive(child, slot.type)
            if slot.repeats:
                if comps is None:
                    comps = {}
                if key not in comps:
                    out[key], comps[key] = [], []
                out[key].append(value)
                comps[key].append(comp)
                continue
            if key in out or "_" + key in out:
                raise _repeated(child, key)
            if value is not None:
                out[key] = value
            if comp is not None:
                out["_" + key] = comp
            continue
        if kind == _COMPLEX:
            item: Any = {}
            _fill(child, slot.type, item)
        elif kind == _RESOURCE:
            item = _nested(child)
        else:
            item = _div(child)
        if slot.repeats:
            if key in out:
                out[key].append(item)
            else:
                out[key] = [item]
        elif key in out:
            raise _repeated(child, key)
        else:
            out[key] = item
    if comps:
        _pad_companions(out, comps)


def _pad_companions(out: dict[str, Any], comps: dict[str, list[dict[str, Any] | None]]) -> None:
    """Add ``_name`` arrays (null where an item has no id/extension) and drop all-null values."""
    for key, cl in comps.items():
        if any(c is not None for c in cl):
            out["_" + key] = cl
        if all(v is None for v in out[key]):
            del out[key]


def _primitive(el: etree._Element, type_code: str) -> tuple[Any, dict[str, Any] | None]:
    """(JSON value or None, ``_name`` companion or None) of a primitive element."""
    value: Any = None
    comp: dict[str, Any] | None = None
    for name, raw in el.items():
        if name == "value":
            value = _typed(raw, type_code, el)
        elif name == "id":
            comp = {"id": raw}
        elif not _foreign(name):
            raise _unknown(el, f"attribute {name!r}", _where(el) + "." + name)
    _no_text(el.text, el)
    if len(el):
        exts = []
        for child in el:
            if child.tag != _EXTENSION:
                raise _unknown(child, "element", _where(child))
            _no_text(child.tail, el)
            ext: dict[str, Any] = {}
            _fill(child, "Extension", ext)
            exts.append(ext)
        comp = comp if comp is not None else {}
        comp["extension"] = exts
    if value is None and comp is None:
        raise Invalid(f"Element {_localname(el)!r} has neither a value nor extensions "
                      f"(line {el.sourceline})", _where(el))
    return value, comp


def _typed(raw: str, type_code: str, el: etree._Element) -> Any:
    """The JSON value of a primitive's ``value`` attribute: bool, int, float or str."""
    if type_code == "boolean":
        if raw in ("true", "false"):
            return raw == "true"
    elif type_code in _INTEGERS:
        if _INT_RX.fullmatch(raw):
            return int(raw)
    elif type_code == "decimal":
        if _DEC_RX.fullmatch(raw):
            if not any(c in raw for c in ".eE"):
                return int(raw)
            number = float(raw)
            if math.isfinite(number):
                return number
    else:
        return raw
    raise Invalid(f"{raw!r} is not a valid {type_code} (line {el.sourceline})", _where(el))


def _nested(wrapper: etree._Element) -> dict[str, Any]:
    """The resource inside a wrapper element such as ``contained`` or ``entry.resource``."""
    for name in wrapper.keys():
        if not _foreign(name):
            raise _unknown(wrapper, f"attribute {name!r}", _where(wrapper) + "." + name)
    _no_text(wrapper.text, wrapper)
    kids = list(wrapper)
    if len(kids) != 1:
        raise Invalid(f"Element {_localname(wrapper)!r} must hold exactly one resource "
                      f"(line {wrapper.sourceline})", _where(wrapper))
    child = kids[0]
    _no_text(child.tail, wrapper)
    tag = child.tag
    name = tag[len(_F):] if isinstance(tag, str) and tag.startswith(_F) else ""
    if name not in model.resource_types():
        raise Invalid(f"Element {_localname(wrapper)!r} must hold a FHIR resource, not "
                      f"{_localname(child)!r} (line {child.sourceline})", _where(wrapper))
    return _resource(child, name)


def _div(el: etree._Element) -> str:
    """Narrative.div serialized as the JSON string, with only the namespaces it uses."""
    div = copy.deepcopy(el)
    div.tail = None
    etree.cleanup_namespaces(div)
    return etree.tostring(div, encoding="unicode")


def _repeated(el: etree._Element, key: str) -> Invalid:
    return Invalid(f"Element {key!r} appears more than once but does not repeat "
                   f"(line {el.sourceline})", _where(el))


def _no_text(text: str | None, el: etree._Element) -> None:
    if text and not text.isspace():
        raise _text_error(el)


def _text_error(el: etree._Element) -> Invalid:
    return Invalid(f"Text content is not allowed in FHIR element {_localname(el)!r} "
                   f"(line {el.sourceline})", _where(el))


def _foreign(attr: str) -> bool:
    """An attribute in another namespace (xsi:schemaLocation, xml:lang), which FHIR ignores."""
    return attr.startswith("{") and not attr.startswith(_F)


def _localname(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else "(non-element content)"


def _unknown(el: etree._Element, what: str, where: str) -> Invalid:
    """The error for an element (``what="element"``) or attribute the model does not define."""
    tag = el.tag
    if what == "element" and isinstance(tag, str) and not tag.startswith(_F):
        return Invalid(f"Element {tag!r} is not in the FHIR namespace (line {el.sourceline})", where)
    hint = " (a Narrative div must be in the XHTML namespace)" if tag == _F + "div" else ""
    if what == "element":
        what = f"element {_localname(el)!r}"
    return Invalid(f"Unknown {what} at {where} (line {el.sourceline}){hint}", where)


def _where(el: etree._Element) -> str:
    """FHIRPath-like location of an element, e.g. ``Bundle.entry[1].resource.code``; computed
    only when reporting an error. Names of nested resources (capitalised) are left out."""
    parts: list[str] = []
    node: etree._Element | None = el
    while node is not None:
        parent = node.getparent()
        name = _localname(node)
        if parent is None:
            parts.append(name)
        elif not name[:1].isupper():
            same = [s for s in parent if s.tag == node.tag]
            parts.append(f"{name}[{same.index(node)}]" if len(same) > 1 else name)
        node = parent
    return ".".join(reversed(parts))


# --- JSON -> XML ------------------------------------------------------------------------------
# The XML is written as text (lxml tree building costs several times more); every attribute value
# passes through _escape. A location is kept as nested tuples (parent, key, index or None) and
# rendered only for an error message.
_Where = tuple[Any, str, int | None] | str
_SPECIAL = re.compile('[&<>"\t\n\r]|[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not XML 1.0 Char
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                          "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


def to_xml(resource: dict[str, Any]) -> bytes:
    """Convert a FHIR JSON resource (a dict) to FHIR XML: UTF-8 bytes with an XML declaration.

    Contract: elements are written in StructureDefinition declaration order, whatever the key
    order of the dict, and ``parse_xml`` of the output gives back an equal dict. Raises
    ``Invalid`` (expression = the element's path) for unknown properties, a JSON type that does
    not fit the element (a string for a boolean, an object where an array belongs, an empty
    array, a null), characters XML 1.0 cannot carry, and a ``div`` that is not an XHTML div.
    """
    if not isinstance(resource, dict):
        raise Invalid("A FHIR resource must be a JSON object")
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    try:
        _emit_resource(out, resource, "")
    except RecursionError:
        raise Invalid("Resource is nested too deeply") from None
    return "".join(out).encode("utf-8")


def _emit_resource(out: list[str], res: dict[str, Any], where: _Where) -> None:
    rt = res.get("resourceType")
    if not isinstance(rt, str) or rt not in model.resource_types():
        at = _render(where) + ".resourceType" if where else "resourceType"
        raise Invalid(f"Unknown resourceType {rt!r}", at)
    _emit(out, rt, res, rt, where or rt, ' xmlns="http://hl7.org/fhir"' if not where else "")


def _emit(out: list[str], tag: str, data: Any, type_name: str, where: _Where, ns: str = "") -> None:
    """Write ``data`` (FHIR type ``type_name``) as element ``tag``, children in declared order."""
    if not isinstance(data, dict):
        raise _bad(where, "must be a JSON object")
    slots = _slots(type_name)
    todo: list[_Slot] = []
    for key in data:
        slot = slots.get(key)
        if slot is None:
            if key == "resourceType" and type_name in model.resource_types():
                continue
            slot = slots.get(key[1:]) if key[:1] == "_" else None
            if slot is None or slot.kind != _PRIM:
                raise Invalid(f"Unknown element {key!r} at {_render(where)}", _render((where, key, None)))
            if slot.key in data:
                continue
        todo.append(slot)
    todo.sort(key=_RANK)
    out.append("<" + tag + ns)
    for slot in todo:
        if slot.kind == _ATTR:
            attr: _Where = (where, slot.key, None)
            out.append(f' {slot.key}="{_escape(_text(data[slot.key], slot, attr), attr)}"')
    out.append(">")
    for slot in todo:
        key, kind = slot.key, slot.kind
        if kind == _PRIM:
            value, comp = data.get(key), data.get("_" + key)
            if not slot.repeats:
                _emit_primitive(out, slot, value, comp, (where, key, None))
                continue
            values = _items(value, slot, where) if value is not None else None
            comps = _items(comp, slot, where) if comp is not None else None
            if values is not None and comps is not None and len(values) != len(comps):
                raise _bad((where, key, None), f"and _{key} must be arrays of the same length")
            for i in range(len(values if values is not None else comps or ())):
                _emit_primitive(out, slot, values[i] if values is not None else None,
                                comps[i] if comps is not None else None, (where, key, i))
        elif kind != _ATTR:
            for i, item in enumerate(_items(data[key], slot, where)):
                at: _Where = (where, key, i if slot.repeats else None)
                if kind == _COMPLEX:
                    _emit(out, key, item, slot.type, at)
                elif kind == _RESOURCE:
                    if not isinstance(item, dict):
                        raise _bad(at, "must be a resource (a JSON object)")
                    out.append(f"<{key}>")
                    _emit_resource(out, item, at)
                    out.append(f"</{key}>")
                else:
                    out.append(_div_text(item, at))
    out.append("</" + tag + ">")


def _items(value: Any, slot: _Slot, where: _Where) -> list[Any]:
    """The values of a property as a list, checking the JSON array-ness the model requires."""
    if slot.repeats:
        if not isinstance(value, list) or not value:
            raise _bad((where, slot.key, None), "must be a non-empty array")
        return value
    if isinstance(value, list) or value is None:
        raise _bad((where, slot.key, None), "does not repeat: it must be a single value, not "
                   + ("an array" if value is not None else "null"))
    return [value]


def _emit_primitive(out: list[str], slot: _Slot, value: Any, comp: Any, where: _Where) -> None:
    """One primitive element: ``value`` attribute, and ``id``/extensions from its ``_`` companion."""
    if comp is None:
        if value is None:
            raise _bad(where, "has neither a value nor extensions")
        text = value if value.__class__ is str and not slot.typed else _text(value, slot, where)
        out.append(f'<{slot.key} value="{_escape(text, where)}"/>')
        return
    if not isinstance(comp, dict) or not comp.keys() <= {"id", "extension"}:
        raise _bad(where, "has a _ companion that may only hold 'id' and 'extension'")
    out.append("<" + slot.key)
    if "id" in comp:
        out.append(f' id="{_escape(_text(comp["id"], _ID_SLOT, where), where)}"')
    if value is not None:
        out.append(f' value="{_escape(_text(value, slot, where), where)}"')
    if "extension" not in comp:
        out.append("/>")
        return
    out.append(">")
    for i, ext in enumerate(_items(comp["extension"], _EXT_SLOT, where)):
        _emit(out, "extension", ext, "Extension", (where, "extension", i))
    out.append(f"</{slot.key}>")


def _text(value: Any, slot: _Slot, where: _Where) -> str:
    """The XML attribute text of a JSON primitive, whose JSON type must fit the FHIR type."""
    t = slot.type
    if t == "boolean":
        if isinstance(value, bool):
            return "true" if value else "false"
    elif t in _INTEGERS or t == "decimal":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if t == "decimal" and isinstance(value, float | Decimal) and math.isfinite(value):
            return repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        return value
    raise _bad(where, f"holds {type(value).__name__} {value!r}, which does not fit FHIR type {t}")


def _escape(text: str, where: _Where) -> str:
    """``text`` as an XML attribute value; white space escaped so that it survives parsing."""
    if _SPECIAL.search(text) is None:
        return text
    if _ILLEGAL.search(text) is not None:
        raise _bad(where, "holds characters that XML cannot represent")
    return text.translate(_ESCAPES)


def _div_text(value: Any, where: _Where) -> str:
    """A Narrative.div string, parsed (hardened like documents) and re-serialized as XHTML."""
    if not isinstance(value, str):
        raise _bad(where, "must be a string of XHTML")
    try:
        div = _parse_secure(value.encode("utf-8", "surrogatepass"), "XHTML in Narrative.div")
    except Invalid as e:
        raise Invalid(e.message, _render(where)) from None
    if div.tag != _DIV:
        raise _bad(where, f"must be a <div> in the XHTML namespace {XHTML_NS}")
    return etree.tostring(div, encoding="unicode")


def _render(where: _Where) -> str:
    parts: list[str] = []
    while isinstance(where, tuple):
        where, key, i = where
        parts.append(key if i is None else f"{key}[{i}]")
    parts.append(where)
    return ".".join(reversed(parts))


def _bad(where: _Where, problem: str) -> Invalid:
    at = _render(where)
    return Invalid(f"{at} {problem}", at)
