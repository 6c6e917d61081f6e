"""Duplicate therapy (NICE NG5): the same ingredient twice, or two medicines of a class where
one at a time is the rule (NSAIDs, ACE inhibitors, statins, SSRIs...)."""

from __future__ import annotations

from tests.services.medicines.helpers import check, kinds, order, taking


def test_co_codamol_duplicates_paracetamol_the_patient_already_takes() -> None:
    found = check(order("Co-codamol 30mg/500mg tablets"), medicines=[taking("Paracetamol 500mg tablets")])
    assert kinds(found, "duplicate") == [("duplicate", "warning")]
    assert "Paracetamol" in found[0].detail


def test_a_second_nsaid_is_duplicate_therapy() -> None:
    found = check(order("Naproxen 250mg tablets"), medicines=[taking("Diclofenac 50mg tablets")])
    assert kinds(found, "duplicate") == [("duplicate", "warning")]
    assert "Non-steroidal" in [f for f in found if f.kind == "duplicate"][0].summary


def test_a_second_statin_is_duplicate_therapy() -> None:
    assert kinds(check(order("Atorvastatin 20mg tablets"), medicines=[taking("Simvastatin 40mg tablets")]),
                 "duplicate") == [("duplicate", "warning")]


def test_two_classes_where_combination_is_usual_are_not_duplicates() -> None:
    assert kinds(check(order("Amlodipine 5mg tablets"), medicines=[taking("Ramipril 5mg capsules")]), "duplicate") == []


def test_the_same_order_is_not_a_duplicate_of_itself() -> None:
    assert kinds(check(order("Ramipril 5mg capsules", id="r1", status="active"),
                       medicines=[taking("Ramipril 5mg capsules", id="r1")]), "duplicate") == []
