"""The ``_content`` index and its search predicate (http://hl7.org/fhir/R4/search.html#text).

A resource's words (``fhir/text.py``) are written as one ``idx_content`` row: tokens
``<tag>_<word>``, the tag naming the (resource type, ``_content``) key, so a search of one type
only ever reads that type's words. The database full-text indexes the row (migration 0009):
SQLite with FTS5, PostgreSQL with a GIN index on the tokens as they are. A search value is a
prefix query per word: every word of a value must start a word of the resource, and values are
OR-ed, in one ``MATCH`` (FTS5) or ``@@`` (tsquery) test.

The test is an SQL construct compiled per database, as a driver (``rid IN (...)``) or as a
correlated probe of one candidate (``EXISTS (... rowid = rid)``, see ``store/search.py``).
Only the compiled rid column and the bound query parameter are put into the SQL text (hence
the ``noqa: S608``); words hold only letters, digits and underscores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TSVECTOR = "array_to_tsvector(string_to_array(words, ' '))"  # must match ix_content_words


def tag(pkey: int) -> str:
    """A short token prefix for a parameter key (base 36 of the key, which is unique per
    resource type; contained resources have keys of their own)."""
    out, n = [], pkey
    while True:
        n, d = divmod(n, 36)
        out.append(_DIGITS[d])
        if not n:
            return "k" + "".join(reversed(out))


PENDING = "carerecord.unit"  # Connection.info key: the Unit whose FTS5 rows wait for its commit


def settle(conn: Any) -> None:
    """Write the FTS5 rows a unit on ``conn`` holds back (repository.Unit.flush_text), so that a
    ``_content`` search inside that unit finds what the unit wrote. Nothing to do outside one."""
    unit = conn.info.get(PENDING)
    if unit is not None:
        unit.flush_text()


def document(pkey: int, words: Iterable[str]) -> str:
    """The ``idx_content.words`` text of a resource whose ``_content`` key is ``pkey``."""
    t = tag(pkey)
    return " ".join(f"{t}_{w}" for w in words)


class ContentMatch(ColumnElement[bool]):
    """True for rows of ``rid`` whose ``_content`` matches ``values`` (OR of AND-ed word
    prefixes) under key ``pkey``; ``probe``: a correlated EXISTS instead of ``rid IN``."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a predicate: never rendered as "(...) = 1" (unindexable)
    _traverse_internals = [("rid", InternalTraversal.dp_clauseelement),
                           ("fts", InternalTraversal.dp_clauseelement),
                           ("tsquery", InternalTraversal.dp_clauseelement),
                           ("probe", InternalTraversal.dp_boolean)]

    def __init__(self, rid: ColumnElement[Any], pkey: int, values: Sequence[Sequence[str]], probe: bool) -> None:
        t = tag(pkey)
        self.rid = rid
        self.probe = probe
        # FTS5: ("k1_a"* AND "k1_b"*) OR ("k1_c"*); tsquery: ('k1_a':* & 'k1_b':*) | ('k1_c':*)
        self.fts: BindParameter[str] = bindparam(None, " OR ".join(
            "(" + " AND ".join(f'"{t}_{w}"*' for w in ws) + ")" for ws in values), type_=Text, unique=True)
        self.tsquery: BindParameter[str] = bindparam(None, " | ".join(
            "(" + " & ".join(f"'{t}_{w}':*" for w in ws) + ")" for ws in values), type_=Text, unique=True)


@compiles(ContentMatch, "sqlite")
def _sqlite(element: ContentMatch, compiler: Any, **kw: Any) -> str:
    rid, q = compiler.process(element.rid, **kw), compiler.process(element.fts, **kw)
    if element.probe:
        return f"EXISTS (SELECT 1 FROM idx_content_fts WHERE idx_content_fts MATCH {q} AND rowid = {rid})"  # noqa: S608
    return f"{rid} IN (SELECT rowid FROM idx_content_fts WHERE idx_content_fts MATCH {q})"  # noqa: S608


@compiles(ContentMatch)
def _postgresql(element: ContentMatch, compiler: Any, **kw: Any) -> str:
    rid, q = compiler.process(element.rid, **kw), compiler.process(element.tsquery, **kw)
    test = f"{_TSVECTOR} @@ CAST({q} AS tsquery)"
    if element.probe:  # OFFSET 0: a correlated subplan, as store/search.py's probes are
        return f"EXISTS (SELECT 1 FROM idx_content WHERE rid = {rid} AND {test} OFFSET 0)"  # noqa: S608
    return f"{rid} IN (SELECT rid FROM idx_content WHERE {test})"  # noqa: S608
