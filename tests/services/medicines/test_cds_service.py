"""The CDS Hooks services without HTTP: discovery, the spec's order-select and order-sign
examples, prefetch rules (null, missing -> 412, another patient's data -> 400) and feedback."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from carerecord.services.medicines.cds import PREFETCH, CdsError, CdsService, fill
from tests.services.medicines.helpers import KB, RESOLVER, TODAY, allergy, order, taking
from tests.services.medicines.spec_examples import assert_valid_response, blocks, hook_request

SELECT, SIGN = "carerecord-medicines-select", "carerecord-medicines-sign"


def _service() -> CdsService:
    return CdsService(KB, RESOLVER, today=lambda: TODAY)


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _prefetch(allergies: list[dict[str, Any]] = (), meds: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"},
            "allergies": _bundle(*allergies), "medications": _bundle(*meds), "statements": None, "egfr": None}


def _sign(*drafts: dict[str, Any], prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"hook": "order-sign", "hookInstance": "h1",
            "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": _bundle(*drafts)},
            "prefetch": _prefetch([allergy("Penicillin")]) if prefetch is None else prefetch}


def test_discovery_lists_order_select_and_order_sign_with_prefetch_templates() -> None:
    services = {s["id"]: s for s in _service().discovery()["services"]}
    assert {s["hook"] for s in services.values()} == {"order-select", "order-sign"}
    for s in services.values():
        assert s["description"] and s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert "AllergyIntolerance?patient={{context.patientId}}" == s["prefetch"]["allergies"]


def test_the_spec_discovery_example_has_the_shape_ours_has() -> None:
    [example] = [b for b in blocks("specification", "current.md") if isinstance(b, dict) and "services" in b][:1]
    ours = _service().discovery()["services"][0]
    for required in ("hook", "description", "id"):
        assert required in example["services"][0] and required in ours


def test_prefetch_tokens_are_filled_and_url_encoded() -> None:
    assert fill(PREFETCH["allergies"], {"patientId": "a b"}) == "AllergyIntolerance?patient=a%20b"
    with pytest.raises(CdsError):
        fill(PREFETCH["patient"], {})


@pytest.mark.parametrize("page,hook,service", [("order-select.md", "order-select", SELECT),
                                               ("order-sign.md", "order-sign", SIGN)])
def test_the_spec_r4_request_examples_are_answered_with_valid_cards(page: str, hook: str, service: str) -> None:
    example = blocks("hooks", page)[0]
    request = hook_request(example, hook)
    request["prefetch"] = {**_prefetch([allergy("Penicillin")]),
                           "patient": {"resourceType": "Patient", "id": "1288992"}}
    for r in request["prefetch"]["allergies"]["entry"]:
        r["resource"]["patient"] = {"reference": "Patient/1288992"}
    body = _service().call(service, request)
    assert_valid_response(body)
    # the example orders amoxicillin/clavulanate (RxNorm, not dm+d): matched by name, it
    # meets the penicillin allergy; its 5 mL dose of a two-ingredient suspension cannot be
    # converted to mg, which is said rather than assumed safe
    indicators = [(c["indicator"], c["summary"]) for c in body["cards"]]
    assert indicators[0][0] == "critical" and "Penicillin" in indicators[0][1]
    assert all(i == "info" and "could not be checked" in s for i, s in indicators[1:])


def test_order_select_checks_only_the_selected_orders() -> None:
    request = _sign(order("Amoxicillin 500mg capsules", id="a"), order("Simvastatin 40mg tablets", id="s"))
    request["hook"] = "order-select"
    request["context"]["selections"] = ["MedicationRequest/s"]
    assert _service().call(SELECT, request)["cards"] == []


def test_two_orders_signed_together_are_checked_against_each_other() -> None:
    request = _sign(order("Clarithromycin 500mg tablets", id="c"), order("Simvastatin 40mg tablets", id="s"))
    cards = _service().call(SIGN, request)["cards"]
    assert sum("interaction" in c["summary"] for c in cards) == 2  # each order warned about the other


def test_a_critical_card_offers_override_reasons_and_removing_the_order() -> None:
    [card] = _service().call(SIGN, _sign(order("Amoxicillin 500mg capsules", id="a")))["cards"]
    assert card["indicator"] == "critical"
    assert card["overrideReasons"] and all(r["display"] for r in card["overrideReasons"])
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete", "description": "Remove Amoxicillin 500mg capsules",
                                      "resourceId": "MedicationRequest/a"}]
    assert "AllergyIntolerance/a1" in card["detail"] and "bnf.nice.org.uk" in card["source"]["url"]


def test_a_null_prefetch_means_no_data_not_missing() -> None:
    request = _sign(order("Amoxicillin 500mg capsules", id="a"),
                    prefetch={**_prefetch(), "allergies": None, "medications": None})
    cards = _service().call(SIGN, request)["cards"]
    assert [c["summary"] for c in cards] == ["No allergy status is recorded for this patient"]


def test_missing_prefetch_without_a_store_is_412() -> None:
    request = _sign(order("Amoxicillin 500mg capsules"))
    del request["prefetch"]["allergies"]
    with pytest.raises(CdsError) as e:
        _service().call(SIGN, request)
    assert e.value.status == 412


def test_missing_prefetch_is_fetched_with_the_filled_template() -> None:
    asked: list[str] = []

    def fetch(url: str) -> dict[str, Any] | None:
        asked.append(url)
        return _bundle(allergy("Penicillin")) if url.startswith("AllergyIntolerance") else None

    request = _sign(order("Amoxicillin 500mg capsules", id="a"), prefetch={})
    cards = _service().call(SIGN, request, fetch)["cards"]
    assert "AllergyIntolerance?patient=p1" in asked and "Patient/p1" in asked
    assert [c["indicator"] for c in cards] == ["critical"]


def test_prefetched_records_of_another_patient_are_refused() -> None:
    other = copy.deepcopy(taking("Warfarin 1mg tablets"))
    other["subject"] = {"reference": "Patient/someone-else"}
    with pytest.raises(CdsError) as e:
        _service().call(SIGN, _sign(order("Aspirin 75mg tablets"), prefetch=_prefetch(meds=[other])))
    assert e.value.status == 400


def test_a_call_to_the_wrong_hook_or_service_is_refused() -> None:
    with pytest.raises(CdsError) as e:
        _service().call(SELECT, _sign(order("Aspirin 75mg tablets")))
    assert e.value.status == 400
    with pytest.raises(CdsError) as e:
        _service().call("nope", _sign(order("Aspirin 75mg tablets")))
    assert e.value.status == 404


def test_feedback_examples_from_the_spec_are_recorded_and_overrides_counted() -> None:
    svc = _service()
    [card] = svc.call(SIGN, _sign(order("Amoxicillin 500mg capsules", id="a")))["cards"]
    examples = [b for b in blocks("specification", "current.md") if isinstance(b, dict) and "feedback" in b]
    assert len(examples) >= 3
    for example in examples:
        svc.feedback(SIGN, example)
    svc.feedback(SIGN, {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z",
                                      "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "Tolerated"}}]})
    counts = svc.feedback_log.override_counts()
    assert counts[("allergy", "benefit-outweighs-risk")] == 1
    assert sum(counts.values()) >= 3


def test_invalid_feedback_is_refused() -> None:
    with pytest.raises(CdsError) as e:
        _service().feedback(SIGN, {"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "t"}]})
    assert e.value.status == 400
