"""Allergy and intolerance check, case by case. Rules: NICE CG183 (drug allergy) and the
BNF penicillins summary (allergy to one penicillin = allergy to all; cross-sensitivity with
cephalosporins and carbapenems), the co-trimoxazole SmPC (sulfonamides), the BNF NSAID
contra-indications (aspirin or any NSAID)."""

from __future__ import annotations

from tests.services.medicines.helpers import NO_KNOWN_DRUG_ALLERGY, allergy, check, coded, kinds, order


def test_amoxicillin_alerts_for_penicillin_allergy() -> None:
    found = check(order("Amoxicillin 500mg capsules"), allergies=[allergy("Penicillin")])
    assert kinds(found) == [("allergy", "critical")]
    f = found[0]
    assert f.evidence[0].reference == "AllergyIntolerance/a1"
    assert "penicillin" in f.detail.lower()
    assert f.source.url.startswith("https://bnf.nice.org.uk/")
    assert f.blocks_signing


def test_allergy_to_amoxicillin_by_substance_code_blocks_flucloxacillin() -> None:
    # 372687004 is the SNOMED CT substance amoxicillin: one penicillin means all (BNF)
    found = check(order("Flucloxacillin 500mg capsules"), allergies=[allergy(coded("372687004", "Amoxicillin"))])
    assert kinds(found) == [("allergy", "critical")]


def test_co_amoxiclav_by_vtm_code_alerts_for_amoxicillin_allergy() -> None:
    found = check(order(coded("89519005", "Co-amoxiclav")), allergies=[allergy("Amoxicillin")])
    assert kinds(found) == [("allergy", "critical")]
    assert "Amoxicillin" in found[0].detail


def test_cefalexin_warns_but_does_not_block_for_penicillin_allergy() -> None:
    found = check(order("Cefalexin 500mg capsules"), allergies=[allergy("Penicillins")])
    assert kinds(found) == [("allergy", "warning")]
    assert "cephalosporin" in found[0].detail.lower()


def test_meropenem_warns_for_penicillin_allergy() -> None:
    assert kinds(check(order("Meropenem 1g powder for solution for injection vials"),
                       allergies=[allergy("Penicillin")])) == [("allergy", "warning")]


def test_co_trimoxazole_alerts_for_sulfonamide_allergy() -> None:
    found = check(order("Co-trimoxazole 80mg/400mg tablets"), allergies=[allergy("Sulfonamides")])
    assert kinds(found) == [("allergy", "critical")]
    assert "SmPC" in found[0].source.title


def test_naproxen_alerts_for_aspirin_allergy() -> None:
    assert kinds(check(order("Naproxen 250mg tablets"), allergies=[allergy("Aspirin")])) == [("allergy", "critical")]


def test_ibuprofen_alerts_for_allergy_recorded_against_the_nsaid_class() -> None:
    assert kinds(check(order("Ibuprofen 400mg tablets"), allergies=[allergy("NSAIDs")])) == [("allergy", "critical")]


def test_a_low_criticality_intolerance_warns_rather_than_blocks() -> None:
    found = check(order("Codeine 30mg tablets"),
                  allergies=[allergy("Codeine", criticality="low", type="intolerance")])
    assert kinds(found) == [("allergy", "warning")]


def test_an_unconfirmed_allergy_of_unknown_criticality_warns() -> None:
    found = check(order("Amoxicillin 500mg capsules"),
                  allergies=[allergy("Penicillin", criticality=None, verification="unconfirmed")])
    assert kinds(found) == [("allergy", "warning")]


def test_an_unconfirmed_high_criticality_allergy_still_blocks() -> None:
    found = check(order("Amoxicillin 500mg capsules"),
                  allergies=[allergy("Penicillin", criticality="high", verification="unconfirmed")])
    assert kinds(found) == [("allergy", "critical")]


def test_an_allergy_entered_in_error_is_ignored() -> None:
    found = check(order("Amoxicillin 500mg capsules"),
                  allergies=[NO_KNOWN_DRUG_ALLERGY, allergy("Penicillin", verification="entered-in-error")])
    assert found == []


def test_a_refuted_or_resolved_allergy_is_ignored() -> None:
    assert check(order("Amoxicillin 500mg capsules"),
                 allergies=[NO_KNOWN_DRUG_ALLERGY, allergy("Penicillin", verification="refuted", id="a1"),
                            allergy("Penicillin", clinical="resolved", id="a2")]) == []


def test_no_known_drug_allergy_means_nothing_to_report() -> None:
    assert check(order("Amoxicillin 500mg capsules"), allergies=[NO_KNOWN_DRUG_ALLERGY]) == []


def test_no_allergy_record_at_all_says_allergies_were_not_checked() -> None:
    found = check(order("Amoxicillin 500mg capsules"), allergies=[])
    assert kinds(found) == [("unchecked", "info")]
    assert "No allergy status" in found[0].summary


def test_a_free_text_drug_allergy_gives_a_could_not_be_checked_finding() -> None:
    found = check(order("Amoxicillin 500mg capsules"), allergies=[allergy("the blue tablets from the walk-in centre")])
    assert kinds(found) == [("unchecked", "warning")]
    assert "could not be checked" in found[0].summary


def test_a_food_allergy_that_is_not_a_medicine_is_not_reported() -> None:
    assert check(order("Amoxicillin 500mg capsules"),
                 allergies=[allergy("Peanuts", category="food")]) == []


def test_an_allergy_to_an_unrelated_drug_is_silent() -> None:
    assert check(order("Amoxicillin 500mg capsules"), allergies=[allergy("Codeine")]) == []


def test_an_unrecognised_medicine_gives_a_could_not_be_checked_finding_and_nothing_else() -> None:
    found = check(order("Dr Smith's special linctus"), allergies=[allergy("Penicillin")])
    assert kinds(found) == [("unchecked", "warning")]
    assert "NOT checked" in found[0].detail
