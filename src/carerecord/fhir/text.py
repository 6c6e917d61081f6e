"""Words for the text searches ``_text`` (the narrative) and ``_content`` (the whole resource),
http://hl7.org/fhir/R4/search.html#text. Pure: the store writes what these return as index
rows and searches with :func:`search_words`.

Both are case- and accent-insensitive (casefolded, accents removed, as string search is) and
match a search word against the start of an indexed word.

- ``_text``: each whitespace-separated word of the narrative (tags and entities removed),
  at most 200; kept as it always was.
- ``_content``: the words (runs of letters and digits) of every string in the resource,
  narrative and contained resources included, at most :data:`MAX_CONTENT_WORDS`. Left out,
  because they are identifiers of things rather than text and would bloat the index: ``id``,
  ``meta``, ``resourceType``, ``reference``, ``system`` and ``url`` values, base64 ``data``,
  and dates and times (searched as dates); so are one-letter words and words over 64
  characters. Search words are split the same way, and all of a value's words must match.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import islice
from typing import Any

from carerecord.fhir.indexing import normalize

MAX_TEXT_WORDS = 200
MAX_CONTENT_WORDS = 1000
MAX_WORD = 64
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&[a-zA-Z#0-9]+;")
_WORD = re.compile(r"\w+")
_SKIP = frozenset({"id", "meta", "resourceType", "reference", "system", "url", "data", "div"})
# FHIR dateTime/instant (at least year and month) and time values
_WHEN = re.compile(r"\d{4}-\d\d(-\d\d(T[0-9:.]+(Z|[+-]\d\d:\d\d)?)?)?|\d\d:\d\d(:\d\d(\.\d+)?)?")


def _narrative(resource: dict[str, Any]) -> str | None:
    div = (resource.get("text") or {}).get("div")
    return _ENTITY.sub(" ", _TAG.sub(" ", div)) if isinstance(div, str) else None


def narrative_words(resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``_text`` index rows (``idx_string``): each distinct word of the narrative, normalised
    like any string, at most 200 words."""
    text = _narrative(resource)
    if text is None:
        return []
    words = dict.fromkeys(w for w in normalize(text).split() if len(w) > 1)
    return [("_text", w, w) for w in islice(words, MAX_TEXT_WORDS)]


def fold(text: str) -> str:
    """Lower case, accents removed (not cached, unlike ``indexing.normalize``: these texts are
    whole resources and would crowd its cache)."""
    if text.isascii():
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def content_words(resource: dict[str, Any]) -> tuple[str, ...]:
    """``_content`` index words of a resource (see the module docstring for which)."""
    strings: list[str] = []
    _strings(resource, strings)
    text = _narrative(resource)
    if text is not None:
        strings.append(text)
    words = dict.fromkeys(w for w in _WORD.findall(fold(" ".join(strings))) if 1 < len(w) <= MAX_WORD)
    return tuple(islice(words, MAX_CONTENT_WORDS))


def _strings(node: Any, out: list[str]) -> None:
    if type(node) is dict:
        for k, v in node.items():
            if k in _SKIP:
                continue
            t = type(v)
            if t is str:
                if not (v[:1].isdigit() and _WHEN.fullmatch(v)):
                    out.append(v)
            elif t is dict or t is list:
                _strings(v, out)
    elif type(node) is list:
        for v in node:
            t = type(v)
            if t is str:
                if not (v[:1].isdigit() and _WHEN.fullmatch(v)):
                    out.append(v)
            elif t is dict or t is list:
                _strings(v, out)


def search_words(code: str, value: str) -> list[str]:
    """The words of one ``_text`` or ``_content`` search value, split as that index is."""
    if code == "_content":
        return _WORD.findall(fold(value))
    return [w for w in normalize(value).split() if w]
