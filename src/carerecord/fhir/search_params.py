"""The search parameter registry: which parameters each resource type has, and their definitions.

The base set is the 1,375 official R4 SearchParameters (http://hl7.org/fhir/R4/searchparameter-registry.html),
generated from the official definitions into ``generated/search_parameters.json`` and read through
``carerecord.fhir.model``; custom ones arrive as SearchParameter resources
(http://hl7.org/fhir/R4/searchparameter.html) through ``SearchParamRegistry.add``. Parameters on
``Resource`` and ``DomainResource`` (``_id``, ``_lastUpdated``, ``_tag``, ``_profile``, ``_security``,
``_source``, ``_text``, ``_content``, ``_query``) apply to every type that derives from them
(http://hl7.org/fhir/R4/search.html#all).

A registry is plain data plus a ``version`` counter that ``add`` bumps, so derived caches (the
compiled extraction plans of ``carerecord.fhir.indexing``) can tell when to rebuild.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from carerecord.errors import Invalid
from carerecord.fhir.model import resource_types, search_parameter_definitions

TYPES = frozenset({"number", "date", "string", "token", "reference", "composite", "quantity", "uri",
                   "special"})
_NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters"})  # resources that are not DomainResources
_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


@dataclass(frozen=True)
class SearchParam:
    """One search parameter as the store and the indexer need it.

    ``expression`` is the FHIRPath of the official or custom definition (None for ``_text``,
    ``_content``, ``_query``); for multi-base official parameters it is the whole union, of which
    each resource type uses its own operands. ``components`` are (definition url, expression
    relative to each element the composite's expression selects).
    """

    code: str
    type: str  # number|date|string|token|reference|composite|quantity|uri|special
    base: tuple[str, ...]
    expression: str | None
    url: str
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()


def _param(d: dict[str, Any]) -> SearchParam:
    return SearchParam(
        code=d["code"], type=d["type"], base=tuple(d["base"]), expression=d.get("expression"),
        url=d["url"], targets=tuple(d.get("target") or ()),
        components=tuple((c["definition"], c["expression"]) for c in d.get("component") or ()))


@cache
def _official() -> tuple[SearchParam, ...]:
    return tuple(_param(d) for d in search_parameter_definitions())


class SearchParamRegistry:
    """Search parameters by resource type and code, and by canonical URL.

    ``SearchParamRegistry()`` starts from its own copy of the official R4 set, so ``add`` on one
    registry never shows in another. Pass ``params`` to start from another set instead.
    """

    def __init__(self, params: Iterable[SearchParam] | None = None) -> None:
        self._by_base: dict[str, dict[str, SearchParam]] = {}
        self._by_url: dict[str, SearchParam] = {}
        self._for_type: dict[str, dict[str, SearchParam]] = {}
        self.version = 0  # bumped by every change
        self.cache: dict[object, object] = {}  # values derived from the parameters; cleared on change
        for p in _official() if params is None else params:
            self._put(p)

    def _put(self, p: SearchParam) -> None:
        for b in p.base:
            self._by_base.setdefault(b, {})[p.code] = p
        self._by_url[p.url] = p
        self._for_type.clear()
        self.cache.clear()
        self.version += 1

    def __iter__(self) -> Iterator[SearchParam]:
        """Every distinct parameter, official and custom."""
        return iter({id(p): p for d in self._by_base.values() for p in d.values()}.values())

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """code -> parameter for ``resource_type``, including the Resource/DomainResource ones
        (a type's own parameter wins over an inherited one of the same code). An unknown type
        has none. Returns a fresh dict the caller may change."""
        cached = self._for_type.get(resource_type)
        if cached is None:
            cached = {}
            if resource_type in resource_types():
                for base in ("Resource", "DomainResource", resource_type):
                    if base == "DomainResource" and resource_type in _NOT_DOMAIN:
                        continue
                    cached.update(self._by_base.get(base, {}))
            self._for_type[resource_type] = cached
        return dict(cached)

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        """The parameter ``code`` of ``resource_type`` (own, then inherited), or None."""
        own = self._by_base.get(resource_type)
        if own is not None and code in own:
            return own[code]
        if resource_type not in resource_types():
            return None
        if resource_type not in _NOT_DOMAIN:
            found = self._by_base.get("DomainResource", {}).get(code)
            if found is not None:
                return found
        return self._by_base.get("Resource", {}).get(code)

    def component_types(self, resource_type: str, code: str) -> tuple[str, ...]:
        """Search types of the components of composite parameter ``code`` (empty if unknown)."""
        key = ("component_types", resource_type, code)
        hit = self.cache.get(key)
        if hit is None:
            p = self.get(resource_type, code)
            comps = [self.by_url(u) for u, _ in p.components] if p else []
            hit = tuple(c.type for c in comps if c is not None) if all(comps) else ()
            self.cache[key] = hit
        return hit  # type: ignore[return-value]

    def by_url(self, url: str) -> SearchParam | None:
        """The parameter with canonical ``url`` (a ``|version`` suffix is ignored)."""
        return self._by_url.get(url) or self._by_url.get(url.split("|", 1)[0])

    def add(self, search_parameter: dict[str, Any]) -> SearchParam:
        """Register a custom SearchParameter resource and return it as a ``SearchParam``.

        ``code``, ``base`` (known resource types), ``type`` and a parseable ``expression`` are
        required, as are ``component`` entries for a composite; otherwise ``Invalid``. A missing
        ``url`` becomes ``urn:carerecord:SearchParameter:<base>-<code>``. A parameter with the
        same code on the same base is replaced.
        """
        d = search_parameter
        if not isinstance(d, dict) or d.get("resourceType", "SearchParameter") != "SearchParameter":
            raise Invalid("not a SearchParameter resource")
        code, base, typ, expr = d.get("code"), d.get("base"), d.get("type"), d.get("expression")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise Invalid(f"SearchParameter.code is missing or malformed: {code!r}", "SearchParameter.code")
        known = resource_types() | {"Resource", "DomainResource"}
        if (not isinstance(base, list) or not base
                or not all(isinstance(b, str) and b in known for b in base)):
            raise Invalid(f"SearchParameter.base must list resource types: {base!r}", "SearchParameter.base")
        if typ not in TYPES:
            raise Invalid(f"SearchParameter.type is missing or unknown: {typ!r}", "SearchParameter.type")
        if not isinstance(expr, str) or not expr.strip():
            raise Invalid("SearchParameter.expression is required", "SearchParameter.expression")
        _check_expression(expr, "SearchParameter.expression")
        comps = d.get("component") or []
        if typ == "composite" and not comps:
            raise Invalid("a composite SearchParameter needs components", "SearchParameter.component")
        for i, c in enumerate(comps):
            where = f"SearchParameter.component[{i}]"
            if not isinstance(c, dict) or not isinstance(c.get("definition"), str):
                raise Invalid("component.definition is required", where)
            if not isinstance(c.get("expression"), str) or not c["expression"].strip():
                raise Invalid("component.expression is required", where)
            _check_expression(c["expression"], where + ".expression")
        url = d.get("url") or f"urn:carerecord:SearchParameter:{'-'.join(base)}-{code}"
        target = d.get("target") or []
        if not isinstance(url, str) or not isinstance(target, list):
            raise Invalid("SearchParameter.url / target malformed", "SearchParameter")
        p = _param({"code": code, "type": typ, "base": base, "expression": expr, "url": url,
                    "target": target, "component": comps})
        self._put(p)
        return p


def _check_expression(expr: str, where: str) -> None:
    """Raise Invalid unless ``expr`` is syntactically valid FHIRPath."""
    from carerecord.fhir.paths import check_syntax
    try:
        check_syntax(expr)
    except ValueError as e:
        raise Invalid(f"cannot parse FHIRPath {expr!r}: {e}", where) from None


@cache
def default_registry() -> SearchParamRegistry:
    """The shared registry of the official R4 parameters (built once)."""
    return SearchParamRegistry()
