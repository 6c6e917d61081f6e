"""JSON and XML on the wire (http://hl7.org/fhir/R4/http.html#mime-type): request bodies in
either, responses chosen by _format or Accept, 406 and 415 for what the server cannot speak,
and XML attacks (DOCTYPE, entity expansion, external entities) refused without writing."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import JSON, XML, base, nothing_written, outcome, patient, put

PATIENT_XML = ('<Patient xmlns="http://hl7.org/fhir"><active value="true"/>'
               '<name><family value="Jones"/><given value="Ann"/><given value="Mary"/></name>'
               '<birthDate value="1960-05-01"/></Patient>')
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


def test_xml_body_is_stored_as_the_same_resource_as_json(client: httpx.Client) -> None:
    r = client.post("/Patient", content=PATIENT_XML, headers={"Content-Type": XML})
    assert r.status_code == 201
    assert r.headers["content-type"] == f"{JSON}; charset=utf-8"
    body = r.json()
    assert {k: v for k, v in body.items() if k not in ("id", "meta")} == {
        "resourceType": "Patient", "active": True,
        "name": [{"family": "Jones", "given": ["Ann", "Mary"]}], "birthDate": "1960-05-01"}


def test_xml_in_and_xml_out(client: httpx.Client) -> None:
    r = client.post("/Patient", content=PATIENT_XML, headers={"Content-Type": f"{XML}; charset=utf-8",
                                                              "Accept": XML})
    assert r.status_code == 201
    assert r.headers["content-type"] == f"{XML}; charset=utf-8"
    assert r.text.startswith(XML_HEAD + '<Patient xmlns="http://hl7.org/fhir"><id value="')
    assert '<versionId value="1"/>' in r.text
    assert '<name><family value="Jones"/><given value="Ann"/><given value="Mary"/></name>' in r.text


def test_update_with_an_xml_body(client: httpx.Client) -> None:
    put(client, patient(id="x1"), 201)
    xml = '<Patient xmlns="http://hl7.org/fhir"><id value="x1"/><gender value="female"/></Patient>'
    r = client.put("/Patient/x1", content=xml, headers={"Content-Type": XML})
    assert r.status_code == 200
    assert r.json()["gender"] == "female" and r.headers["etag"] == 'W/"2"'


@pytest.mark.parametrize("fmt, media", [("xml", XML), ("json", JSON), (XML, XML), (JSON, JSON),
                                        ("application/xml", XML), ("text/xml", XML),
                                        ("application/json", JSON)])
def test_format_parameter_chooses_the_response_format(client: httpx.Client, fmt: str, media: str) -> None:
    put(client, patient(id="f", active=True), 201)
    r = client.get("/Patient/f", params={"_format": fmt})
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{media}; charset=utf-8"
    if media == XML:
        stamp = client.get("/Patient/f").json()["meta"]["lastUpdated"]
        assert r.text == (XML_HEAD + '<Patient xmlns="http://hl7.org/fhir"><id value="f"/><meta>'
                          f'<versionId value="1"/><lastUpdated value="{stamp}"/>'
                          '</meta><active value="true"/></Patient>')
    else:
        assert r.json()["active"] is True


def test_format_parameter_wins_over_accept(client: httpx.Client) -> None:
    put(client, patient(id="f"), 201)
    r = client.get("/Patient/f", params={"_format": "json"}, headers={"Accept": XML})
    assert r.headers["content-type"].startswith(JSON)
    r = client.get("/Patient/f", params={"_format": "xml"}, headers={"Accept": JSON})
    assert r.headers["content-type"].startswith(XML)


@pytest.mark.parametrize("accept, media", [
    (XML, XML), ("application/xml", XML), ("text/xml", XML), (JSON, JSON), ("application/json", JSON),
    ("*/*", JSON), ("", JSON), ("application/fhir+xml;q=0.9, application/fhir+json", JSON),
    ("application/fhir+json;q=0.5, application/fhir+xml;q=0.8", XML),
    ("text/plain, application/fhir+xml", XML), ("application/fhir+json;q=0, */*", JSON),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
])
def test_accept_header_negotiates_the_response_format(client: httpx.Client, accept: str, media: str) -> None:
    put(client, patient(id="f"), 201)
    r = client.get("/Patient/f", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{media}; charset=utf-8"


def test_errors_come_in_the_negotiated_format(client: httpx.Client) -> None:
    r = client.get("/Patient/nobody", headers={"Accept": XML})
    assert r.status_code == 404
    assert r.headers["content-type"] == f"{XML}; charset=utf-8"
    assert r.text.startswith(XML_HEAD + '<OperationOutcome xmlns="http://hl7.org/fhir"><issue>'
                             '<severity value="error"/><code value="not-found"/>')


@pytest.mark.parametrize("headers, params", [
    ({"Accept": "text/plain"}, {}), ({"Accept": "application/pdf, text/csv"}, {}),
    ({"Accept": "application/fhir+json;q=0"}, {}), ({}, {"_format": "turtle"}),
    ({"Accept": JSON}, {"_format": "application/pdf"}),
])
def test_unsupported_accept_or_format_is_406_in_json(client: httpx.Client, headers: dict[str, str],
                                                     params: dict[str, str]) -> None:
    put(client, patient(id="f"), 201)
    r = client.get("/Patient/f", headers=headers, params=params)
    outcome(r, 406, "not-supported")


def test_a_write_that_cannot_be_answered_is_406_and_writes_nothing(client: httpx.Client) -> None:
    outcome(client.post("/Patient", json=patient(), headers={"Accept": "text/plain"}), 406, "not-supported")
    outcome(client.put("/Patient/n", json=patient(id="n"), params={"_format": "yaml"}), 406, "not-supported")
    nothing_written(client)


@pytest.mark.parametrize("ctype", ["text/plain", "application/yaml", "multipart/form-data; boundary=x",
                                   "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415_and_writes_nothing(client: httpx.Client, ctype: str) -> None:
    body = b'{"resourceType": "Patient"}'
    outcome(client.post("/Patient", content=body, headers={"Content-Type": ctype}), 415, "not-supported")
    outcome(client.put("/Patient/u", content=b'{"resourceType": "Patient", "id": "u"}',
                       headers={"Content-Type": ctype}), 415, "not-supported")
    outcome(client.post(base(client), content=b'{"resourceType": "Bundle", "type": "batch"}',
                        headers={"Content-Type": ctype}), 415, "not-supported")
    nothing_written(client)


def test_search_bundle_in_xml(client: httpx.Client) -> None:
    put(client, patient(id="s", active=True), 201)
    r = client.get("/Patient", params={"_id": "s", "_format": "xml"})
    assert r.status_code == 200
    assert r.text.startswith(XML_HEAD + '<Bundle xmlns="http://hl7.org/fhir">')
    assert '<type value="searchset"/>' in r.text
    assert '<resource><Patient><id value="s"/>' in r.text


# -- XML that must be refused ------------------------------------------------------------------------
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
                  '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
                  '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
                  '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
                  '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
                  '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
                  '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
                  '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>'
                  '<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>')
XXE_FILE = ('<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>')
XXE_PARAMETER = ('<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>'
                 '<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>')
EXTERNAL_DTD = ('<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "file:///etc/passwd">'
                '<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>')
XINCLUDE = ('<Patient xmlns="http://hl7.org/fhir" xmlns:xi="http://www.w3.org/2001/XInclude">'
            '<xi:include href="file:///etc/passwd" parse="text"/></Patient>')


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER, EXTERNAL_DTD, XINCLUDE],
                         ids=["billion-laughs", "external-entity", "parameter-entity", "external-dtd",
                              "xinclude"])
def test_hostile_xml_is_400_leaks_no_file_and_writes_nothing(client: httpx.Client, xml: str) -> None:
    for r in (client.post("/Patient", content=xml, headers={"Content-Type": XML}),
              client.post("/Patient", content=xml, headers={"Content-Type": XML, "Accept": XML}),
              client.put("/Patient/x", content=xml, headers={"Content-Type": XML}),
              client.post("/Patient/$validate", content=xml, headers={"Content-Type": XML})):
        assert r.status_code == 400, r.text
        assert "root:" not in r.text and "/bin/" not in r.text and "lollollol" not in r.text
    outcome(client.post("/Patient", content=xml, headers={"Content-Type": XML}), 400, "invalid")
    nothing_written(client)


def test_doctype_is_refused_even_without_entities(client: httpx.Client) -> None:
    xml = ('<?xml version="1.0"?><!DOCTYPE Patient>'
           '<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>')
    issue = outcome(client.post("/Patient", content=xml, headers={"Content-Type": XML}), 400, "invalid")
    assert "DOCTYPE" in issue["diagnostics"]
    nothing_written(client)


@pytest.mark.parametrize("xml, expression", [
    ('<Patient xmlns="http://hl7.org/fhir"><active value="true"/>', None),
    ("not xml at all", None),
    ('<Patient><active value="true"/></Patient>', None),
    ('<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>', "Patient.foo"),
    ('<Patient xmlns="http://hl7.org/fhir"><active>true</active></Patient>', None),
])
def test_malformed_or_unknown_xml_is_400_and_writes_nothing(client: httpx.Client, xml: str,
                                                            expression: str | None) -> None:
    outcome(client.post("/Patient", content=xml, headers={"Content-Type": XML}), 400, "invalid", expression)
    nothing_written(client)
