"""Drug-drug interactions, one case per required rule, each citing the rule's source
(data/interactions.json): anticoagulants with antiplatelets and NSAIDs, serotonergic
combinations, QT-prolonging combinations, methotrexate with trimethoprim, potassium with
potassium-sparing diuretics and ACE inhibitors, simvastatin with strong CYP3A4 inhibitors."""

from __future__ import annotations

from tests.services.medicines.helpers import check, coded, kinds, order, taking


def interactions(new: str, current: str) -> list[tuple[str, str]]:
    return kinds(check(order(new), medicines=[taking(current)]), "interaction")


def test_aspirin_with_warfarin_is_a_severe_bleeding_interaction() -> None:
    found = [f for f in check(order("Aspirin 75mg dispersible tablets"), medicines=[taking("Warfarin 1mg tablets")])
             if f.kind == "interaction"]
    assert [(f.severity.indicator, f.group) for f in found] == [("critical", "bleeding")]
    assert found[0].evidence[0].reference == "MedicationRequest/current"
    assert "cks.nice.org.uk" in found[0].source.url


def test_ibuprofen_with_apixaban_is_a_severe_bleeding_interaction() -> None:
    assert interactions("Ibuprofen 400mg tablets", "Apixaban 5mg tablets") == [("interaction", "critical")]


def test_two_anticoagulants_are_contraindicated_together() -> None:
    found = [f for f in check(order("Enoxaparin 40mg/0.4ml injection"), medicines=[taking("Rivaroxaban 20mg tablets")])
             if f.kind == "interaction"]
    assert [f.severity.indicator for f in found] == ["critical"]
    assert "SmPC" in found[0].source.title


def test_sertraline_with_phenelzine_is_contraindicated_for_serotonin_syndrome() -> None:
    found = [f for f in check(order("Sertraline 50mg tablets"), medicines=[taking("Phenelzine 15mg tablets")])
             if f.kind == "interaction"]
    assert [(f.severity.indicator, f.group) for f in found] == [("critical", "serotonin")]


def test_tramadol_with_fluoxetine_warns_of_serotonin_syndrome() -> None:
    assert interactions("Tramadol 50mg capsules", "Fluoxetine 20mg capsules") == [("interaction", "critical")]


def test_sumatriptan_with_citalopram_is_a_moderate_interaction() -> None:
    assert interactions("Sumatriptan 50mg tablets", "Citalopram 20mg tablets") == [("interaction", "warning")]


def test_citalopram_with_another_qt_drug_is_reported_once_as_contraindicated() -> None:
    found = [f for f in check(order("Clarithromycin 500mg tablets"), medicines=[taking("Citalopram 20mg tablets")])
             if f.kind == "interaction" and f.group == "qt"]
    assert len(found) == 1
    assert "contraindicated" in found[0].summary
    assert found[0].source.url == "https://www.gov.uk/drug-safety-update/citalopram-and-escitalopram-qt-interval-prolongation"


def test_two_other_qt_prolonging_drugs_are_severe() -> None:
    found = check(order("Haloperidol 5mg tablets"), medicines=[taking("Amiodarone 200mg tablets")])
    assert [(f.severity.indicator, f.group) for f in found if f.kind == "interaction"] == [("critical", "qt")]


def test_trimethoprim_with_methotrexate_is_severe() -> None:
    found = [f for f in check(order("Trimethoprim 200mg tablets"), medicines=[taking("Methotrexate 2.5mg tablets")])
             if f.kind == "interaction"]
    assert ("critical", "myelosuppression") in [(f.severity.indicator, f.group) for f in found]
    assert "bone marrow" in " ".join(f.detail for f in found)


def test_co_trimoxazole_with_methotrexate_matches_through_its_trimethoprim() -> None:
    found = check(order(coded("18037511000001105", "Co-trimoxazole")), medicines=[taking("Methotrexate 2.5mg tablets")])
    assert "myelosuppression" in {f.group for f in found if f.kind == "interaction" and f.blocks_signing}


def test_potassium_chloride_with_spironolactone_is_severe() -> None:
    found = check(order("Potassium chloride 600mg modified-release tablets"), medicines=[taking("Spironolactone 25mg tablets")])
    assert [(f.severity.indicator, f.group) for f in found if f.kind == "interaction"] == [("critical", "hyperkalaemia")]


def test_potassium_chloride_with_ramipril_is_severe() -> None:
    assert interactions("Potassium chloride 600mg modified-release tablets", "Ramipril 5mg capsules") == \
        [("interaction", "critical")]


def test_spironolactone_with_an_ace_inhibitor_warns_per_mhra() -> None:
    found = [f for f in check(order("Spironolactone 25mg tablets"), medicines=[taking("Lisinopril 10mg tablets")])
             if f.kind == "interaction"]
    assert [f.severity.indicator for f in found] == ["warning"]
    assert found[0].source.publisher == "MHRA Drug Safety Update"


def test_clarithromycin_with_simvastatin_is_contraindicated() -> None:
    found = [f for f in check(order("Clarithromycin 500mg tablets"), medicines=[taking("Simvastatin 40mg tablets")])
             if f.kind == "interaction"]
    assert [(f.severity.indicator, f.group) for f in found] == [("critical", "myopathy")]
    assert "Simvastatin: updated advice on drug interactions" in found[0].source.title


def test_itraconazole_with_simvastatin_is_contraindicated() -> None:
    assert interactions("Itraconazole 100mg capsules", "Simvastatin 20mg tablets") == [("interaction", "critical")]


def test_a_medication_statement_counts_as_a_current_medicine() -> None:
    statement = {"resourceType": "MedicationStatement", "id": "s1", "status": "active",
                 "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "Warfarin"}}
    found = check(order("Naproxen 250mg tablets"), medicines=[statement])
    assert [f.evidence[0].reference for f in found if f.kind == "interaction"] == ["MedicationStatement/s1"]


def test_a_stopped_prescription_does_not_interact() -> None:
    assert interactions("Aspirin 75mg dispersible tablets", "Warfarin 1mg tablets") != []
    found = check(order("Aspirin 75mg dispersible tablets"), medicines=[taking("Warfarin 1mg tablets", status="stopped")])
    assert kinds(found, "interaction") == []


def test_two_draft_orders_signed_together_are_checked_against_each_other() -> None:
    found = check(order("Clarithromycin 500mg tablets"), others=[order("Simvastatin 40mg tablets", id="other")])
    assert [f.evidence[0].reference for f in found if f.kind == "interaction"] == ["MedicationRequest/other"]


def test_unrelated_medicines_do_not_interact() -> None:
    assert interactions("Paracetamol 500mg tablets", "Amlodipine 5mg tablets") == []
