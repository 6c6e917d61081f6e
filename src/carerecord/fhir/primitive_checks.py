"""Checks of FHIR R4 primitive values as they appear in JSON.

Each primitive type gets one function ``check(value) -> message | None`` that enforces the JSON
representation (http://hl7.org/fhir/R4/json.html#primitive: strings for most types, JSON numbers
for integer/decimal, JSON booleans for boolean) and the lexical format of
http://hl7.org/fhir/R4/datatypes.html#primitive. The format regexes are the official ones, read
from the generated model (``model.primitive_pattern``), never hand-copied; where a cheaper test
decides the common case (plain strings, codes and URIs without odd whitespace) the regex is skipped.
Beyond the regexes, calendar dates are checked for existence (no 2023-02-30).

The checks are pure and allocation-light because they run for every primitive of every resource
written to the server.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from functools import cache

from carerecord.fhir import model

Check = Callable[[object], "str | None"]

MAX_STRING = 1024 * 1024  # "strings SHALL NOT exceed 1MB in size" (datatypes.html#string)
INT_MIN, INT_MAX = -2_147_483_648, 2_147_483_647  # integer is a signed 32-bit value
_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_JSON_NAMES = {str: "string", int: "number", float: "number", bool: "boolean",
               dict: "object", list: "array"}


def json_kind(value: object) -> str:
    """The JSON kind of a parsed value with its article, for messages ("a string", "an array")."""
    name = _JSON_NAMES.get(type(value), "null" if value is None else type(value).__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name if name != "null" else name


def _bad_json(value: object, type_code: str, expected: str) -> str:
    return f"Expected a JSON {expected} for FHIR type {type_code}, found {json_kind(value)}"


def _check_text(value: object, type_code: str) -> str | None:
    """string/markdown: a non-empty JSON string that is not only whitespace, at most 1MB."""
    if type(value) is not str:
        return _bad_json(value, type_code, "string")
    if not value:
        return "Empty strings are not allowed (use no element instead)"
    if value.isspace():
        return "A string must contain non-whitespace characters"
    if len(value) > MAX_STRING:
        return "A string must not exceed 1MB"
    return None


def _real_date(value: str) -> bool:
    """Whether the YYYY-MM-DD prefix of a value matching the date regex names a real day."""
    if len(value) < 10:
        return True
    day = int(value[8:10])
    month = int(value[5:7])
    if day <= 28:
        return True
    if month == 2 and day == 29:
        year = int(value[0:4])
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= _DAYS[month]


def _regex_check(type_code: str, calendar: bool = False) -> Check:
    """A check by the official regex; ``calendar`` adds the real-date test."""
    pattern = model.primitive_pattern(type_code)
    assert pattern is not None, type_code
    fullmatch = pattern.fullmatch

    def check(value: object) -> str | None:
        if type(value) is not str:
            return _bad_json(value, type_code, "string")
        if not value:
            return "Empty strings are not allowed (use no element instead)"
        if fullmatch(value) is None:
            return f"Invalid {type_code} '{value[:100]}': does not match the FHIR {type_code} format"
        if calendar and not _real_date(value):
            return f"Invalid {type_code} '{value[:100]}': not a real calendar date"
        return None

    return check


def _code_check() -> Check:
    """code: no leading/trailing whitespace and no runs of whitespace (regex only when needed)."""
    slow = _regex_check("code")

    def check(value: object) -> str | None:
        if type(value) is str and value and " " not in value and value.isprintable():
            return None
        return slow(value)

    return check


def _uri_check(type_code: str) -> Check:
    """uri/url/canonical: a non-empty string without whitespace."""
    slow = _regex_check(type_code)

    def check(value: object) -> str | None:
        if type(value) is str and value and " " not in value and value.isprintable():
            return None
        return slow(value)

    return check


def _integer_check(type_code: str, low: int) -> Check:
    def check(value: object) -> str | None:
        if type(value) is not int:
            return _bad_json(value, type_code, "number without a fraction")
        if value < low or value > INT_MAX:
            if type_code == "integer":
                return f"Integer {value} is outside the 32-bit range"
            return f"{type_code} must be at least {low} and at most {INT_MAX}, found {value}"
        return None

    return check


def _check_decimal(value: object) -> str | None:
    if type(value) is int or type(value) is float:
        return None
    return _bad_json(value, "decimal", "number")


def _check_boolean(value: object) -> str | None:
    if type(value) is bool:
        return None
    return _bad_json(value, "boolean", "boolean (true or false)")


def _has_whitespace(value: str) -> bool:
    return " " in value or "\n" in value or "\r" in value or "\t" in value


def _check_base64(value: object) -> str | None:
    if type(value) is not str:
        return _bad_json(value, "base64Binary", "string")
    if not value:
        return "Empty strings are not allowed (use no element instead)"
    data = "".join(value.split()) if _has_whitespace(value) else value
    try:
        binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return "Invalid base64Binary: not valid base64 content"
    return None


def _check_xhtml(value: object) -> str | None:
    """Narrative.div: an XHTML <div> fragment without script (narrative.html#xhtml).

    Only the outer element and the absence of ``<script`` are checked, not the full
    permitted-element list of the spec.
    """
    if type(value) is not str:
        return _bad_json(value, "xhtml", "string")
    if not value.startswith("<div"):
        return "Narrative div must be an XHTML fragment starting with <div"
    if "<script" in value.lower():
        return "Narrative div must not contain script elements"
    return None


@cache
def checker(type_code: str) -> Check:
    """The check function for a primitive type code (raises KeyError for non-primitives)."""
    if type_code in ("string", "markdown"):
        def check_text(value: object) -> str | None:
            if type(value) is str and value and len(value) <= MAX_STRING and not value.isspace():
                return None
            return _check_text(value, type_code)
        return check_text
    if type_code == "code":
        return _code_check()
    if type_code in ("uri", "url", "canonical"):
        return _uri_check(type_code)
    if type_code in ("date", "dateTime", "instant"):
        return _regex_check(type_code, calendar=True)
    if type_code in ("id", "oid", "uuid", "time"):
        return _regex_check(type_code)
    if type_code == "integer":
        return _integer_check(type_code, INT_MIN)
    if type_code == "positiveInt":
        return _integer_check(type_code, 1)
    if type_code == "unsignedInt":
        return _integer_check(type_code, 0)
    simple: dict[str, Check] = {"decimal": _check_decimal, "boolean": _check_boolean,
                                "base64Binary": _check_base64, "xhtml": _check_xhtml}
    return simple[type_code]
