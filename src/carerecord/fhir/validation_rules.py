"""Type-specific rules of write-time validation, applied after an object's elements are walked.

These are the rules of the base specification and of NHS England that a table of elements
cannot express: references (http://hl7.org/fhir/R4/references.html), required bindings on
Coding/CodeableConcept (http://hl7.org/fhir/R4/terminologies.html#required), the Extension
invariant ext-1 (http://hl7.org/fhir/R4/extensibility.html) and the NHS number (Modulus 11,
NHS Data Dictionary). ``carerecord.fhir.validation`` calls ``POST_CHECKS[type]`` for every
object of that type; each check appends issues to the shared ``Context``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Protocol

import nhs_number

from carerecord.errors import Issue
from carerecord.fhir import model
from carerecord.fhir.primitive_checks import checker

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


class FieldInfo(Protocol):
    """What a post-check needs to know about the element it checks."""

    targets: frozenset[str] | None  # allowed reference target types; None = any
    value_set: dict[str, frozenset[str]] | None  # required binding expansion (Coding/CodeableConcept)
    binding: str | None  # the bound value set's URL


class Context:
    """Per-resource state: the issues found and the local (contained) reference bookkeeping.

    ``contained_ids`` are the ids of the container's contained resources; ``local_refs``
    collects the ``#id`` references seen, ``self_refs`` the contained resources that refer
    to their container with ``#`` (both for dom-3); ``current`` is the id of the contained
    resource being walked, if any.
    """

    __slots__ = ("issues", "contained_ids", "local_refs", "current", "self_refs")

    def __init__(self, issues: list[Issue], contained_ids: frozenset[str]) -> None:
        self.issues = issues
        self.contained_ids = contained_ids
        self.local_refs: set[str] = set()
        self.current: object = None  # id of the contained resource being walked
        self.self_refs: set[object] = set()  # ids of contained resources referencing their container

    def error(self, code: str, message: str, expression: str) -> None:
        self.issues.append(Issue("error", code, message, (expression,)))


PostCheck = Callable[[FieldInfo, dict[str, object], str, Context], None]


@cache
def _extension_value_keys() -> frozenset[str]:
    kids = model.children("Extension") or {}
    return frozenset(k for k in kids if k.startswith("value"))


def check_reference(f: FieldInfo, ref_obj: dict[str, object], path: str, ctx: Context) -> None:
    """Reference.reference: local, relative (allowed target type), conditional or absolute."""
    ref = ref_obj.get("reference")
    if type(ref) is not str or not ref:
        return  # absent, or already reported by the primitive check
    if ref[0] == "#":
        if len(ref) == 1:
            if ctx.current is not None:
                ctx.self_refs.add(ctx.current)
        elif ref[1:] in ctx.contained_ids:
            ctx.local_refs.add(ref[1:])
        else:
            ctx.error("value", f"Reference '{ref}' does not match the id of a contained resource",
                      path + ".reference")
        return
    if ref.startswith("urn:") or "://" in ref:
        return
    head, sep, _ = ref.partition("?")
    parts = head.split("/")
    if sep and len(parts) == 1:
        rtype = head
    elif not sep and (len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history")) \
            and checker("id")(parts[1]) is None:
        rtype = parts[0]
    else:
        ctx.issues.append(Issue("warning", "value", f"Reference '{ref}' cannot be resolved: expected "
                                "Type/id, #id, Type?query or an absolute URL", (path + ".reference",)))
        return
    if rtype not in model.resource_types():
        ctx.error("value", f"Invalid reference '{ref}': unknown resource type {rtype}",
                  path + ".reference")
    elif f.targets is not None and rtype not in f.targets:
        allowed = ", ".join(sorted(f.targets))
        ctx.error("value", f"Reference to {rtype} is not allowed here (allowed: {allowed})",
                  path + ".reference")


def check_identifier(f: FieldInfo, ident: dict[str, object], path: str, ctx: Context) -> None:
    """An NHS number identifier must carry a valid 10-digit NHS number."""
    if ident.get("system") != NHS_NUMBER_SYSTEM:
        return
    value = ident.get("value")
    if value is None:
        if "_value" not in ident:
            ctx.error("required", "An NHS number identifier must have a value", path + ".value")
    elif type(value) is str and not (len(value) == 10 and value.isdigit()
                                     and nhs_number.is_valid(value)):
        ctx.error("value", f"Invalid NHS number '{value}': must be 10 digits passing the "
                  "Modulus 11 check", path + ".value")


def check_coding(f: FieldInfo, coding: dict[str, object], path: str, ctx: Context) -> None:
    if f.value_set is not None:
        coding_in(f.value_set, f.binding, coding, path, ctx)


def check_concept(f: FieldInfo, concept: dict[str, object], path: str, ctx: Context) -> None:
    if f.value_set is None:
        return
    codings = concept.get("coding")
    if type(codings) is list:
        for i, coding in enumerate(codings):
            if type(coding) is dict:
                coding_in(f.value_set, f.binding, coding, f"{path}.coding[{i}]", ctx)


def coding_in(value_set: dict[str, frozenset[str]], url: str | None, coding: dict[str, object],
               path: str, ctx: Context) -> None:
    """A coding whose system the required value set enumerates must use one of its codes."""
    system = coding.get("system")
    codes = value_set.get(system) if type(system) is str else None
    code = coding.get("code")
    if codes is not None and type(code) is str and code not in codes:
        ctx.error("code-invalid", f"Code '{code}' from {system} is not in the required "
                  f"value set {url}", path + ".code")


def check_extension(f: FieldInfo, ext: dict[str, object], path: str, ctx: Context) -> None:
    """ext-1: an extension has either a value[x] or nested extensions, not both."""
    has_value = not ext.keys().isdisjoint(_extension_value_keys())
    if "extension" in ext:
        if has_value:
            ctx.error("invariant", "An extension must have either extensions or a value, not both "
                      "(ext-1)", path)
    elif not has_value:
        ctx.error("invariant", "An extension must have either extensions or a value (ext-1)", path)


POST_CHECKS: dict[str, PostCheck] = {
    "Reference": check_reference, "Identifier": check_identifier, "Coding": check_coding,
    "CodeableConcept": check_concept, "Extension": check_extension}
