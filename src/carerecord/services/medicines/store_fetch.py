"""Answering the CDS service's prefetch templates from the local store, through the store's
own read and search (the same code as the FHIR API), when the client did not prefetch.

Only relative URLs of this server are answered; nothing is fetched from another server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from carerecord.errors import Gone, NotFound
from carerecord.fhir.search_query import parse
from carerecord.store.interactions import check_type
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher

MAX_RESULTS = 1000


class StoreFetcher:
    """Callable: a relative FHIR URL (``Patient/1`` or ``Type?params``) to the resource, a
    searchset Bundle, or None when a read finds nothing."""

    def __init__(self, repo: Repository, base: str | None = None) -> None:
        self.repo = repo
        self.base = base
        self.searcher = Searcher(repo.registry)

    def __call__(self, url: str) -> Mapping[str, Any] | None:
        path, _, query = url.partition("?")
        if "://" in path or path.startswith("/"):
            raise ValueError(f"only relative URLs of this server are fetched, not {url!r}")
        if not query:
            res_type, _, res_id = path.partition("/")
            check_type(res_type)
            try:
                content = self.repo.read(res_type, res_id).content
            except (NotFound, Gone):
                return None
            return orjson.loads(content) if content is not None else None  # type: ignore[no-any-return]
        check_type(path)
        q = parse((path,), parse_qsl(query), self.repo.registry, self.base)
        with self.repo.reading() as conn:
            result = self.searcher.run(conn, q, min(q.count or MAX_RESULTS, MAX_RESULTS))
        entries = [{"resource": orjson.loads(h.content), "search": {"mode": h.mode}}
                   for h in (*result.matches, *result.included)]
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}
