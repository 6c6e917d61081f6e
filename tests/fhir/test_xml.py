"""Tests of carerecord.fhir.xml: FHIR R4 XML <-> JSON (http://hl7.org/fhir/R4/xml.html)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree

from carerecord.errors import Invalid
from carerecord.fhir.xml import parse_xml, to_xml

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLES = SHARED / "data" / "uk-core" / "examples"
SYNTHEA = SHARED / "data" / "synthea-r4"
if not (SHARED / "data").is_dir():
    pytest.skip("shared/data (UK Core and Synthea examples) is not beside the repository",
                allow_module_level=True)

UK_CORE = sorted(EXAMPLES.glob("*.xml"))
FHIR = 'xmlns="http://hl7.org/fhir"'
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def example(name: str) -> dict[str, Any]:
    return parse_xml((EXAMPLES / f"{name}.xml").read_bytes())


def patient(body: str) -> bytes:
    return f"<Patient {FHIR}>{body}</Patient>".encode()


def same_json(a: Any, b: Any) -> bool:
    """Equal including JSON types (True == 1 in Python, but not in JSON)."""
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def canonical(xml: bytes) -> bytes:
    """XML without insignificant white space, with each element's children stably sorted by tag
    (so only the relative order of repeats counts), in canonical form."""
    root = etree.fromstring(xml, etree.XMLParser(remove_comments=True))
    xhtml = "{http://www.w3.org/1999/xhtml}"
    for el in list(root.iter()):
        if el.tag.startswith(xhtml):
            continue
        if el.text and el.text.isspace():
            el.text = None
        for child in el:
            if child.tail and child.tail.isspace():
                child.tail = None
        el[:] = sorted(el, key=lambda c: c.tag)
    return etree.tostring(root, method="c14n")


def rejection(data: bytes) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse_xml(data)
    return caught.value


# --- the UK Core examples --------------------------------------------------------------------

def test_the_uk_core_examples_are_present() -> None:
    assert len(UK_CORE) >= 100


@pytest.mark.parametrize("path", UK_CORE, ids=lambda p: p.stem)
def test_uk_core_examples_round_trip_through_json(path: Path) -> None:
    resource = parse_xml(path.read_bytes())
    assert next(iter(resource)) == "resourceType"
    assert resource["resourceType"] == etree.QName(etree.parse(str(path)).getroot()).localname
    assert same_json(parse_xml(to_xml(resource)), resource)


@pytest.mark.parametrize("path", UK_CORE, ids=lambda p: p.stem)
def test_to_xml_reproduces_the_uk_core_xml_apart_from_white_space(path: Path) -> None:
    original = path.read_bytes()
    assert canonical(to_xml(parse_xml(original))) == canonical(original)


def test_to_xml_writes_elements_in_declaration_order_even_when_the_source_did_not() -> None:
    # The Albumin example has <text> before <meta>; R4 declares meta before text.
    xml = to_xml(example("UKCore-Observation-Lab-Albumin-Example"))
    tags = [etree.QName(c).localname for c in etree.fromstring(xml)]
    assert tags[:3] == ["id", "meta", "text"]


def test_richard_smith_has_his_nhs_number() -> None:
    richard = example("UKCore-Patient-RichardSmith-Example")
    nhs = richard["identifier"][0]
    assert nhs["system"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert nhs["value"] == "9912003888"
    assert nhs["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    assert richard["birthDate"] == "1970-09-11"
    assert richard["gender"] == "male"
    assert richard["name"][0]["given"] == ["Richard"]


def test_repeating_primitives_become_arrays_and_single_ones_stay_scalars() -> None:
    richard = example("UKCore-Patient-RichardSmith-Example")
    timing = richard["extension"][1]["extension"][1]["valueTiming"]["repeat"]
    assert timing["dayOfWeek"] == ["mon", "wed", "fri"]
    assert timing["when"] == ["MORN"]
    assert timing["frequency"] == 1 and timing["periodUnit"] == "d"


def test_narrative_div_is_the_xhtml_string_with_its_namespace() -> None:
    richard = example("UKCore-Patient-RichardSmith-Example")
    assert richard["text"] == {
        "status": "additional",
        "div": f"<div {XHTML}>An example to illustrate a generic patient</div>"}


def test_primitive_extension_of_a_uk_core_example_goes_to_the_underscore_property() -> None:
    telecom = example("Extension-UKCore-OtherContactSystem-Example")["telecom"][0]
    assert telecom["system"] == "other"
    assert telecom["_system"]["extension"][0]["url"] == (
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-OtherContactSystem")


def test_bundle_entry_resources_are_unwrapped_and_typed() -> None:
    bundle = example("UKCore-Bundle-NEWS2Observations-Example")
    first = bundle["entry"][0]
    assert first["fullUrl"] == "Observation/21344a45-2660-45d1-9fb3-49e54d14b662"
    assert list(first["resource"])[:2] == ["resourceType", "id"]
    assert first["resource"]["valueQuantity"]["value"] == 6
    temperature = [e["resource"]["valueQuantity"] for e in bundle["entry"]
                   if e["resource"].get("valueQuantity", {}).get("code") == "Cel"]
    assert temperature[0]["value"] == 37.5 and isinstance(temperature[0]["value"], float)


# --- JSON typing and the _name companions ------------------------------------------------------

def test_decimals_integers_and_booleans_get_their_json_types() -> None:
    obs = parse_xml(f"""<Observation {FHIR}><status value="final"/><code><text value="x"/></code>
        <valueQuantity><value value="1.50"/></valueQuantity>
        <component><code><text value="a"/></code><valueInteger value="-3"/></component>
        <component><code><text value="b"/></code><valueBoolean value="false"/></component>
        <component><code><text value="c"/></code><valueQuantity><value value="70"/></valueQuantity>
        </component><component><code><text value="d"/></code><valueString value="007"/></component>
        </Observation>""".encode())
    assert same_json(obs["valueQuantity"], {"value": 1.5})
    values = [next(v for k, v in c.items() if k.startswith("value")) for c in obs["component"]]
    assert same_json(values, [-3, False, {"value": 70}, "007"])


def test_primitive_id_and_extensions_go_into_the_underscore_companion() -> None:
    p = parse_xml(patient("""<birthDate id="b1" value="1970-01-01"><extension
        url="http://hl7.org/fhir/StructureDefinition/patient-birthTime"><valueDateTime
        value="1970-01-01T10:00:00Z"/></extension></birthDate><deceasedBoolean value="true"/>"""))
    assert p["birthDate"] == "1970-01-01"
    assert p["_birthDate"] == {"id": "b1", "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
        "valueDateTime": "1970-01-01T10:00:00Z"}]}
    assert p["deceasedBoolean"] is True
    assert same_json(parse_xml(to_xml(p)), p)


def test_repeated_primitive_companions_are_padded_with_null() -> None:
    p = parse_xml(patient("""<name id="n1"><given value="Ann"/><given id="g2"><extension url="u">
        <valueBoolean value="true"/></extension></given><given value="Cy"/></name>"""))
    assert p["name"] == [{"id": "n1", "given": ["Ann", None, "Cy"],
                          "_given": [None, {"id": "g2", "extension": [
                              {"url": "u", "valueBoolean": True}]}, None]}]
    assert same_json(parse_xml(to_xml(p)), p)


def test_contained_resources_are_unwrapped_with_their_resource_type() -> None:
    xml = patient("""<id value="p"/><contained><Organization><id value="o1"/><name value="GP"/>
        </Organization></contained><contained><Practitioner><id value="d1"/></Practitioner>
        </contained><managingOrganization><reference value="#o1"/></managingOrganization>""")
    p = parse_xml(xml)
    assert p["contained"] == [{"resourceType": "Organization", "id": "o1", "name": "GP"},
                              {"resourceType": "Practitioner", "id": "d1"}]
    assert b"<contained><Organization><id value=\"o1\"/>" in to_xml(p)
    assert same_json(parse_xml(to_xml(p)), p)


def test_foreign_attributes_comments_and_processing_instructions_are_ignored() -> None:
    xml = (f'<?xml version="1.0"?><!-- c --><Patient {FHIR} xmlns:xsi='
           '"http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir x.xsd">'
           f'<?pi x?><active value="true"/><!-- c --><text><status value="generated"/><div {XHTML}>'
           "<p>Hi &amp; <b>bye</b></p></div></text></Patient>").encode()
    assert parse_xml(xml) == {"resourceType": "Patient", "active": True, "text": {
        "status": "generated", "div": f"<div {XHTML}><p>Hi &amp; <b>bye</b></p></div>"}}


def test_fhir_json_example_converts_to_xml_and_back() -> None:
    resource = {
        "resourceType": "Observation", "id": "bp", "status": "final",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "75367002"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T09:30:00Z",
        "component": [
            {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80.5, "unit": "mm[Hg]"}}],
        "note": [{"text": 'Line one\nline <two> & "three"\twith tab'}],
    }
    xml = to_xml(resource)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Observation xmlns="http://hl7.org/fhir">')
    assert [etree.QName(c).localname for c in etree.fromstring(xml)][:4] == [
        "id", "meta", "status", "code"]
    assert same_json(parse_xml(xml), resource)


def test_a_synthea_json_bundle_converts_to_xml_and_back() -> None:
    smallest = min(SYNTHEA.glob("*.json.gz"), key=lambda p: p.stat().st_size)
    bundle = orjson.loads(gzip.decompress(smallest.read_bytes()))
    assert same_json(parse_xml(to_xml(bundle)), bundle)


# --- what parse_xml refuses ----------------------------------------------------------------------

def test_unknown_element_is_rejected_with_its_path() -> None:
    error = rejection(patient('\n<active value="true"/>\n<foo value="x"/>'))
    assert error.issues[0].expression == ("Patient.foo",)
    assert "line 3" in error.message


def test_unknown_element_inside_a_bundle_entry_names_the_entry() -> None:
    xml = (f'<Bundle {FHIR}><type value="batch"/><entry><resource><Patient/></resource></entry>'
           '<entry><resource><Patient><name><bogus value="1"/></name></Patient></resource></entry>'
           "</Bundle>").encode()
    assert rejection(xml).issues[0].expression == ("Bundle.entry[1].resource.name.bogus",)


def test_unknown_attribute_is_rejected() -> None:
    assert rejection(patient('<active value="true" colour="red"/>')).issues[0].expression == (
        "Patient.active.colour",)


def test_text_outside_the_narrative_is_rejected() -> None:
    assert "Text content" in rejection(patient('<active value="true"/>hello')).message


def test_element_outside_the_fhir_namespace_is_rejected() -> None:
    assert "not in the FHIR namespace" in rejection(patient('<x:active xmlns:x="urn:x"/>')).message
    assert "Unknown element 'div'" in rejection(patient("<text><div>no xhtml ns</div></text>")).message


def test_root_must_be_a_fhir_resource_in_the_fhir_namespace() -> None:
    assert "FHIR namespace" in rejection(b"<Patient><active value='true'/></Patient>").message
    assert "FHIR namespace" in rejection(b'<Patient xmlns="urn:other"/>').message
    assert "not a FHIR resource type" in rejection(f"<HumanName {FHIR}/>".encode()).message


def test_malformed_xml_is_rejected_with_its_line() -> None:
    error = rejection(patient('\n<active value="true">\n'))
    assert error.message.startswith("Malformed XML (line 3)")
    assert rejection(b"").message.startswith("Malformed XML")
    assert "Malformed" in rejection(b"not xml at all").message


def test_values_json_cannot_carry_are_rejected() -> None:
    assert "not a valid boolean" in rejection(patient('<active value="yes"/>')).message
    assert "not a valid integer" in rejection(patient('<multipleBirthInteger value="+2"/>')).message
    assert "neither a value nor extensions" in rejection(patient("<gender/>")).message


def test_a_non_repeating_element_given_twice_is_rejected() -> None:
    assert "does not repeat" in rejection(patient('<gender value="male"/><gender value="female"/>')).message


def test_a_resource_wrapper_must_hold_exactly_one_resource() -> None:
    assert "exactly one" in rejection(patient("<contained><Patient/><Patient/></contained>")).message
    assert "FHIR resource" in rejection(patient("<contained><name/></contained>")).message


def test_deep_nesting_fails_cleanly() -> None:
    deep = "<extension url='u'>" * 300 + "</extension>" * 300
    with pytest.raises(Invalid):
        parse_xml(patient(deep))
    nested: dict[str, Any] = {"url": "u"}
    for _ in range(3000):
        nested = {"url": "u", "extension": [nested]}
    with pytest.raises(Invalid):
        to_xml({"resourceType": "Patient", "extension": [nested]})


# --- security -----------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
               for i in range(1, 10))
    + b']><Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>')


def test_billion_laughs_is_rejected_quickly() -> None:
    start = time.perf_counter()
    error = rejection(BILLION_LAUGHS)
    assert error.message == "DOCTYPE is not allowed in FHIR XML"
    assert time.perf_counter() - start < 1.0
    assert "lollol" not in str(error.issues)


@pytest.mark.parametrize("where", ["div", "attribute"])
def test_external_entity_never_reads_the_file(where: str) -> None:
    secret = Path("/etc/passwd").read_text(errors="replace").splitlines()[0] if Path(
        "/etc/passwd").exists() else "root:x:0:0"
    body = (f'<text><status value="generated"/><div {XHTML}>&xxe;</div></text>' if where == "div"
            else '<name><family value="&xxe;"/></name>')
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
           f"\n<Patient {FHIR}>{body}</Patient>").encode()
    error = rejection(xml)
    assert error.message == "DOCTYPE is not allowed in FHIR XML"
    assert secret not in repr(error) and "root:" not in repr(error.issues)


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE Patient SYSTEM "http://127.0.0.1:9/evil.dtd">',
    '<!DOCTYPE Patient [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
    "<!DOCTYPE Patient>",
])
def test_any_doctype_is_rejected(doctype: str) -> None:
    error = rejection(f'<?xml version="1.0"?>{doctype}<Patient {FHIR}/>'.encode())
    assert error.message == "DOCTYPE is not allowed in FHIR XML"


def test_a_doctype_in_utf16_is_rejected_too() -> None:
    xml = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE p [<!ENTITY x SYSTEM '
           f'"file:///etc/passwd">]><Patient {FHIR}><id value="&x;"/></Patient>').encode("utf-16")
    assert rejection(xml).message == "DOCTYPE is not allowed in FHIR XML"


def test_to_xml_parses_a_narrative_div_as_safely_as_a_document() -> None:
    div = f'<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]><div {XHTML}>&x;</div>'
    with pytest.raises(Invalid, match="DOCTYPE"):
        to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}})


# --- what to_xml refuses -------------------------------------------------------------------------

@pytest.mark.parametrize(("resource", "expression"), [
    ({"resourceType": "Patient", "foo": 1}, "Patient.foo"),
    ({"resourceType": "Patient", "name": [{"_family": {"id": "x"}, "colour": "red"}]},
     "Patient.name[0].colour"),
    ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
    ({"resourceType": "Patient", "multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
    ({"resourceType": "Patient", "name": {"family": "x"}}, "Patient.name"),
    ({"resourceType": "Patient", "name": []}, "Patient.name"),
    ({"resourceType": "Patient", "gender": ["male"]}, "Patient.gender"),
    ({"resourceType": "Patient", "name": [{"text": "bell\x07"}]}, "Patient.name[0].text"),
    ({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [None, None]}]},
     "Patient.name[0].given"),
    ({"resourceType": "Patient", "text": {"status": "generated", "div": "<p>x</p>"}}, "Patient.text.div"),
    ({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]},
     "Patient.contained[0].resourceType"),
    ({"resourceType": "Nope"}, "resourceType"),
])
def test_to_xml_rejects_what_it_cannot_write_faithfully(resource: dict[str, Any], expression: str) -> None:
    with pytest.raises(Invalid) as caught:
        to_xml(resource)
    assert caught.value.issues[0].expression == (expression,)
