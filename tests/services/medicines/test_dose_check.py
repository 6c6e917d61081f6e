"""Dose check: adult maximum single, daily and weekly doses (BNF, MHRA) for the patient's
age, and renal limits by the latest eGFR (SmPCs, MHRA)."""

from __future__ import annotations

from tests.services.medicines.helpers import check, dose, egfr, kinds, order


def test_paracetamol_1g_four_times_a_day_is_within_the_limit() -> None:
    assert kinds(check(order("Paracetamol 500mg tablets", dose(2, per_day=4)))) == []


def test_paracetamol_1g_six_times_a_day_is_above_the_daily_maximum() -> None:
    found = check(order("Paracetamol 500mg tablets", dose(2, per_day=6)))
    assert kinds(found) == [("dose", "critical")]
    assert "6000 mg" in found[0].summary and "4000 mg" in found[0].summary
    assert found[0].source.url == "https://bnf.nice.org.uk/drugs/paracetamol/"


def test_a_2g_single_dose_of_paracetamol_in_mg_is_above_the_single_maximum() -> None:
    found = check(order("Paracetamol", dose(2000, unit="mg")))
    assert ("dose", "critical") in kinds(found)
    assert any("single dose" in f.summary for f in found)


def test_daily_methotrexate_is_stopped_as_a_weekly_overdose() -> None:
    found = check(order("Methotrexate 2.5mg tablets", dose(4, per_day=1)))
    assert kinds(found) == [("dose", "critical")]
    assert "weekly dose 70 mg" in found[0].summary
    assert "ONCE A WEEK" in found[0].detail


def test_weekly_methotrexate_10mg_is_within_the_limit() -> None:
    assert kinds(check(order("Methotrexate 2.5mg tablets", dose(4, per_day=1, period_unit="wk")))) == []


def test_citalopram_30mg_is_allowed_at_50_but_above_the_limit_over_65() -> None:
    assert kinds(check(order("Citalopram 10mg tablets", dose(3)), birth_date="1976-01-01")) == []
    found = check(order("Citalopram 10mg tablets", dose(3)), birth_date="1950-01-01")
    assert kinds(found) == [("dose", "critical")]
    assert "from age 65" in found[0].detail


def test_a_child_is_told_the_dose_was_not_checked() -> None:
    found = check(order("Paracetamol 500mg tablets", dose(2, per_day=6)), birth_date="2020-01-01")
    assert kinds(found) == [("unchecked", "info")]
    assert "under 18" in found[0].summary


def test_a_liquid_dose_in_ml_uses_the_strength_per_5ml() -> None:
    found = check(order("Amoxicillin 250mg/5ml oral suspension", dose(25, unit="mL", per_day=3)))
    assert kinds(found) == [("dose", "critical")]  # 1250 mg x 3 = 3750 mg > 3 g


def test_a_dose_in_tablets_of_an_unknown_strength_could_not_be_checked() -> None:
    found = check(order("Paracetamol", dose(2, per_day=4)))
    assert kinds(found) == [("unchecked", "info")]
    assert "could not be checked" in found[0].summary


def test_an_as_needed_dose_with_a_maximum_per_day_is_checked_against_it() -> None:
    prn = {"asNeededBoolean": True, "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
           "maxDosePerPeriod": {"numerator": {"value": 10, "unit": "tablet"}, "denominator": {"value": 1, "unit": "d"}}}
    assert kinds(check(order("Paracetamol 500mg tablets", prn))) == [("dose", "critical")]


def test_metformin_is_stopped_when_egfr_is_below_30() -> None:
    found = check(order("Metformin 500mg tablets", dose(1, per_day=2)), observations=[egfr(25)])
    assert kinds(found, "renal") == [("renal", "critical")]
    renal = [f for f in found if f.kind == "renal"][0]
    assert renal.evidence[0].reference == "Observation/egfr1"


def test_metformin_2g_daily_is_above_the_limit_at_egfr_40() -> None:
    found = check(order("Metformin 500mg tablets", dose(2, per_day=2)), observations=[egfr(40)])
    assert kinds(found, "renal") == [("renal", "warning")]
    assert "1000 mg" in [f for f in found if f.kind == "renal"][0].summary


def test_the_latest_egfr_is_the_one_used() -> None:
    found = check(order("Metformin 500mg tablets", dose(1, per_day=2)),
                  observations=[egfr(25, when="2025-01-01", id="old"), egfr(70, when="2026-10-01", id="new")])
    assert kinds(found, "renal") == []


def test_nitrofurantoin_is_contraindicated_below_egfr_30_per_mhra() -> None:
    found = check(order("Nitrofurantoin 50mg capsules", dose(1, unit="capsule", per_day=4)), observations=[egfr(28)])
    renal = [f for f in found if f.kind == "renal"]
    assert [f.severity.indicator for f in renal] == ["critical"]
    assert renal[0].source.url.startswith("https://www.gov.uk/drug-safety-update/nitrofurantoin")


def test_without_an_egfr_renal_limits_are_reported_as_not_checked() -> None:
    found = check(order("Metformin 500mg tablets", dose(1, per_day=2)))
    assert kinds(found, "renal") == [("renal", "info")]
    assert "No eGFR" in found[0].summary
