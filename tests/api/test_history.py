"""History at instance, type and system level with _since, _at, _count and paging by ``next``
links (http://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import base, create, history, outcome, patient, put


def versions(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(resource id, version) of each history entry, version taken from the response etag."""
    return [(e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"].split('"')[1]) for e in entries]


def write_three_versions(client: httpx.Client, rid: str) -> list[dict[str, Any]]:
    return [put(client, patient(id=rid), 201), put(client, patient(id=rid, active=True)),
            put(client, patient(id=rid, active=False))]


def test_instance_history_lists_every_version_newest_first(client: httpx.Client) -> None:
    written = write_three_versions(client, "h")
    put(client, patient(id="other"), 201)
    r = client.get("/Patient/h/_history")
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "history"
    assert body["total"] == 3
    assert [e["resource"] for e in body["entry"]] == written[::-1]
    assert body["entry"][0]["fullUrl"] == f"{base(client)}/Patient/h"
    assert [e["request"] for e in body["entry"]] == [{"method": "PUT", "url": "Patient/h"}] * 3
    assert [e["response"]["status"][:3] for e in body["entry"]] == ["200", "200", "201"]
    assert body["entry"][0]["response"]["lastModified"] == written[2]["meta"]["lastUpdated"]


def test_instance_history_of_an_unknown_resource_is_404(client: httpx.Client) -> None:
    outcome(client.get("/Patient/nobody/_history"), 404, "not-found")


def test_type_history_lists_versions_of_that_type_only(client: httpx.Client) -> None:
    write_three_versions(client, "t1")
    put(client, patient(id="t2"), 201)
    create(client, {"resourceType": "Organization", "name": "Surgery"})
    entries = history(client, "/Patient/_history")
    assert sorted(versions(entries)) == [("t1", "1"), ("t1", "2"), ("t1", "3"), ("t2", "1")]
    assert {e["resource"]["resourceType"] for e in entries} == {"Patient"}


def test_system_history_lists_versions_of_every_type(client: httpx.Client) -> None:
    put(client, patient(id="s1"), 201)
    org = create(client, {"resourceType": "Organization", "name": "Surgery"})
    assert client.delete("/Patient/s1").status_code == 204
    entries = history(client, "/_history")
    assert versions(entries) == [("s1", "2"), (org["id"], "1"), ("s1", "1")]
    assert entries[0]["request"]["method"] == "DELETE"


def test_since_keeps_versions_written_at_or_after_the_instant(client: httpx.Client) -> None:
    written = write_three_versions(client, "h")
    since = written[1]["meta"]["lastUpdated"]
    entries = history(client, "/Patient/h/_history", _since=since)
    assert versions(entries) == [("h", "3"), ("h", "2")]
    assert versions(history(client, "/_history", _since=since)) == [("h", "3"), ("h", "2")]
    assert history(client, "/Patient/_history", _since="2999-01-01T00:00:00Z") == []


def test_at_gives_the_versions_current_at_that_time(client: httpx.Client) -> None:
    written = write_three_versions(client, "h")
    at = written[1]["meta"]["lastUpdated"]
    assert versions(history(client, "/Patient/h/_history", _at=at)) == [("h", "2")]
    assert versions(history(client, "/Patient/_history", _at=at)) == [("h", "2")]
    year = at[:4]
    assert len(history(client, "/Patient/h/_history", _at=year)) == 3


def test_bad_since_at_and_count_are_400_naming_the_parameter(client: httpx.Client) -> None:
    put(client, patient(id="h"), 201)
    outcome(client.get("/Patient/h/_history", params={"_since": "yesterday"}), 400, "invalid", "_since")
    outcome(client.get("/_history", params={"_at": "2020-13"}), 400, "invalid", "_at")
    outcome(client.get("/Patient/_history", params={"_count": "0"}), 400, "invalid", "_count")
    outcome(client.get("/Patient/_history", params={"_count": "many"}), 400, "invalid", "_count")
    outcome(client.get("/_history", params={"_cursor": "nonsense"}), 400, "invalid", "_cursor")


def test_count_pages_and_next_links_reach_every_version_exactly_once(client: httpx.Client) -> None:
    for i in range(5):
        write_three_versions(client, f"p{i}")
    r = client.get("/_history", params={"_count": 4})
    first = r.json()
    assert len(first["entry"]) == 4
    assert [link["relation"] for link in first["link"]] == ["self", "next"]
    entries = history(client, "/_history", _count=4)
    seen = versions(entries)
    assert len(seen) == 15 and len(set(seen)) == 15
    assert set(seen) == {(f"p{i}", str(v)) for i in range(5) for v in (1, 2, 3)}
    modified = [e["response"]["lastModified"] for e in entries]
    assert modified == sorted(modified, reverse=True)


def test_the_last_page_has_no_next_link(client: httpx.Client) -> None:
    write_three_versions(client, "h")
    body = client.get("/Patient/h/_history", params={"_count": 3}).json()
    assert len(body["entry"]) == 3
    assert [link["relation"] for link in body["link"]] == ["self"]


def test_next_links_stay_on_their_versions_while_new_ones_are_written(client: httpx.Client) -> None:
    for i in range(3):
        write_three_versions(client, f"p{i}")
    r = client.get("/Patient/_history", params={"_count": 4})
    seen = versions(r.json()["entry"])
    put(client, patient(id="p0", gender="female"))  # a new version at the head of the history
    put(client, patient(id="late"), 201)
    while nxt := [link["url"] for link in r.json()["link"] if link["relation"] == "next"]:
        r = client.get(nxt[0])
        seen += versions(r.json()["entry"])
    assert sorted(seen) == sorted((f"p{i}", str(v)) for i in range(3) for v in (1, 2, 3))


def test_history_in_xml(client: httpx.Client) -> None:
    put(client, patient(id="x"), 201)
    r = client.get("/Patient/x/_history", params={"_format": "xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns="http://hl7.org/fhir">')
    assert '<type value="history"/>' in r.text
    assert '<id value="x"/>' in r.text
