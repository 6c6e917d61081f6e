"""The administration chart and bedside recording (services/medicines/administration.py,
timing.py): due times from Dosage timing; given, not given, delayed; and the bedside checks
(right patient, due window, already given, allergy re-checked)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from carerecord.errors import Invalid
from carerecord.services.medicines import administration, ordering
from carerecord.services.medicines.administration import Dose
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.timing import schedule
from carerecord.store.repository import Repository
from tests.services.medicines.world import (
    DOCTOR,
    KB,
    NHS_NUMBER,
    NOW,
    NURSE,
    RESOLVER,
    WRISTBAND,
    allergy,
    inpatient_order,
    read,
    save,
    step,
)

DAY = date(2026, 11, 23)
EIGHT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 08:00 in London in November


def _hours(dosage_repeat: dict[str, Any], as_needed: bool = False) -> list[str]:
    dosage: dict[str, Any] = {"timing": {"repeat": dosage_repeat}}
    if as_needed:
        dosage["asNeededBoolean"] = True
    return [t.strftime("%H:%M") for t in schedule(dosage, DAY).times]


def test_frequencies_fall_on_the_ward_drug_rounds() -> None:
    assert _hours({"frequency": 1, "period": 1, "periodUnit": "d"}) == ["08:00"]
    assert _hours({"frequency": 2, "period": 1, "periodUnit": "d"}) == ["08:00", "20:00"]
    assert _hours({"frequency": 4, "period": 1, "periodUnit": "d"}) == ["08:00", "12:00", "18:00", "22:00"]


def test_when_time_of_day_and_hourly_intervals_give_their_own_times() -> None:
    assert _hours({"when": ["HS"]}) == ["22:00"]
    assert _hours({"when": ["CM"], "offset": 30}) == ["08:30"]
    assert _hours({"timeOfDay": ["06:00:00", "18:00:00"]}) == ["06:00", "18:00"]
    assert _hours({"frequency": 1, "period": 8, "periodUnit": "h"}) == ["06:00", "14:00", "22:00"]


def test_weekly_and_as_needed_lines() -> None:
    assert _hours({"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon"]}) == ["08:00"]  # a Monday
    assert _hours({"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["tue"]}) == []
    assert _hours({"frequency": 4, "period": 1, "periodUnit": "d"}, as_needed=True) == []


def test_bounds_and_every_other_day_limit_the_days_a_line_is_due() -> None:
    started = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)
    every_other = {"timing": {"repeat": {"frequency": 1, "period": 2, "periodUnit": "d"}}}
    assert [len(schedule(every_other, date(2026, 11, d), started).times) for d in (21, 22, 23)] == [1, 0, 1]
    ended = {"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                                   "boundsPeriod": {"start": "2026-11-20", "end": "2026-11-23T12:00:00Z"}}}}
    assert [t.strftime("%H:%M") for t in schedule(ended, DAY).times] == ["08:00"]
    assert schedule(ended, DAY, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)).times  # bounds win over authoredOn


def test_a_dose_for_a_time_the_order_does_not_have_is_refused(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    with pytest.raises(Invalid) as caught:
        _give(community, order, scheduled=EIGHT + timedelta(hours=1))
    assert caught.value.issues[0].expression == ("scheduled",)


def test_doses_fall_in_local_ward_time_across_the_clock_change() -> None:
    summer = schedule({"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}, date(2026, 7, 1))
    assert summer.times[0].astimezone(UTC).hour == 7  # 08:00 BST


def _active(repo: Repository, order: dict[str, Any]) -> str:
    draft = save(repo, order)
    out = step(repo, lambda r: ordering.sign(r, draft["id"], {}, DOCTOR, NOW, KB, RESOLVER))
    assert out.status == "signed", out.findings
    return str(draft["id"])


def _give(repo: Repository, order_id: str, when: datetime = EIGHT, scanned: str = NHS_NUMBER, *,
          status: str = "given", scheduled: datetime | None = EIGHT, overrides: dict[str, Override] | None = None,
          **more: Any) -> administration.Outcome:
    dose = Dose(status, scanned, scheduled=scheduled, **more)
    return step(repo, lambda r: administration.administer(r, order_id, dose, NURSE, when, KB, RESOLVER, overrides))


def test_the_chart_shows_each_active_order_with_its_due_times_and_what_was_recorded(community: Repository) -> None:
    bd = _active(community, inpatient_order("Paracetamol 500mg tablets",
                                            timing={"frequency": 2, "period": 1, "periodUnit": "d"}))
    prn = _active(community, inpatient_order("Paracetamol 500mg tablets", as_needed=True,
                                             timing={"frequency": 4, "period": 1, "periodUnit": "d"}))
    _give(community, bd)
    lines = step(community, lambda r: administration.chart(r, "p1", DAY, NOW))
    by_order = {line.order["id"]: line for line in lines}
    assert [(s.due.strftime("%H:%M"), s.state) for s in by_order[bd].slots] == [("08:00", "given"), ("20:00", "scheduled")]
    assert by_order[prn].as_needed and by_order[prn].slots == []
    assert not by_order[bd].verified


def test_an_order_written_after_the_last_round_is_on_that_days_chart(community: Repository) -> None:
    """Started at 21:00, twice a day (08:00, 20:00): no dose is left that day, but the ward's
    chart still shows the order (verified or not), and the next day's shows its 08:00 dose; a
    course that ended the day before is not on the chart."""
    late = _active(community, inpatient_order("Paracetamol 500mg tablets", timing={
        "frequency": 2, "period": 1, "periodUnit": "d", "boundsPeriod": {"start": "2026-11-23T21:00:00Z"}}))
    ended = _active(community, inpatient_order("Paracetamol 500mg tablets", timing={
        "frequency": 2, "period": 1, "periodUnit": "d",
        "boundsPeriod": {"start": "2026-11-20T08:00:00Z", "end": "2026-11-22T21:00:00Z"}}))
    tonight = datetime(2026, 11, 23, 21, 30, tzinfo=UTC)
    today = {line.order["id"]: line for line in step(community, lambda r: administration.chart(r, "p1", DAY, tonight))}
    assert late in today and today[late].slots == [] and ended not in today
    tomorrow = step(community, lambda r: administration.chart(r, "p1", DAY + timedelta(days=1), tonight))
    assert [s.due.strftime("%H:%M") for line in tomorrow if line.order["id"] == late for s in line.slots][:1] == ["08:00"]


def test_a_dose_not_recorded_after_its_window_shows_as_overdue(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    lines = step(community, lambda r: administration.chart(r, "p1", DAY, EIGHT + timedelta(hours=3)))
    assert [s.state for line in lines if line.order["id"] == order for s in line.slots] == ["overdue"]


def test_a_dose_given_is_recorded_against_its_due_time(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    out = _give(community, order)
    [admin] = out.of_type("MedicationAdministration")
    assert admin["status"] == "completed" and admin["request"] == {"reference": f"MedicationRequest/{order}"}
    assert admin["extension"][0]["valueDateTime"] == "2026-11-23T08:00:00Z"
    assert admin["performer"] == [{"actor": {"reference": NURSE}}]


def test_the_wristband_identifier_is_accepted_as_well_as_the_nhs_number(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    dose = Dose("given", "RZZ-p1", WRISTBAND, EIGHT)
    out = step(community, lambda r: administration.administer(r, order, dose, NURSE, EIGHT, KB, RESOLVER))
    assert out.status == "given"


def test_wrong_patient_blocks_and_cannot_be_overridden(community: Repository) -> None:
    """Hazard H026: a dose recorded for the wrong patient (the scan must match the order's patient)."""
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    out = _give(community, order, scanned="9990000026")  # the other patient's NHS number
    assert out.status == "blocked" and [f.kind for f in out.blocked] == ["wrong-patient"]
    again = _give(community, order, scanned="9990000026", overrides={out.blocked[0].key: Override(comment="sure")})
    assert again.status == "blocked"
    assert step(community, lambda r: r.search("MedicationAdministration", "subject=Patient/p1")) == []


def test_a_dose_already_given_cannot_be_given_again(community: Repository) -> None:
    """Hazard H027: double dose (the same due time recorded as given twice)."""
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    assert _give(community, order).status == "given"
    out = _give(community, order, when=EIGHT + timedelta(minutes=20))
    assert [f.kind for f in out.blocked] == ["double-dose"]
    assert _give(community, order, overrides={out.blocked[0].key: Override(comment="x")}).status == "blocked"


def test_as_needed_doses_stop_at_the_daily_maximum(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets", as_needed=True,
                                               timing={"frequency": 2, "period": 1, "periodUnit": "d"}))
    assert _give(community, order, scheduled=None).status == "given"
    assert _give(community, order, when=EIGHT + timedelta(hours=5), scheduled=None).status == "given"
    out = _give(community, order, when=EIGHT + timedelta(hours=10), scheduled=None)
    assert [f.kind for f in out.blocked] == ["double-dose-prn"]


def test_a_dose_given_early_needs_a_reason_and_a_late_one_is_flagged(community: Repository) -> None:
    """Rule: due time window (60 minutes either side)."""
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    early = _give(community, order, when=EIGHT - timedelta(hours=2))
    assert [f.kind for f in early.blocked] == ["timing"]
    fine = _give(community, order, when=EIGHT - timedelta(hours=2),
                 overrides={early.blocked[0].key: Override(comment="Going to theatre at 07:00")})
    assert fine.status == "given" and fine.of_type("DetectedIssue")
    other = _active(community, inpatient_order("Paracetamol 500mg tablets", pid="p2"))
    late = _give(community, other, when=EIGHT + timedelta(hours=2), scanned="9990000026")
    assert late.status == "given"
    assert [(f.kind, f.severity.indicator) for f in late.findings if f.kind == "timing"] == [("timing", "warning")]


def test_an_allergy_recorded_after_prescribing_is_caught_at_the_bedside(community: Repository) -> None:
    """Hazard H028: missed allergy at the bedside (the allergy check runs again at each dose)."""
    order = _active(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    save(community, allergy("Penicillin"))
    out = _give(community, order)
    assert out.status == "blocked" and [f.kind for f in out.blocked] == ["allergy"]


def test_an_allergy_overridden_at_prescribing_warns_at_the_bedside_without_blocking(community: Repository) -> None:
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    key = step(community, lambda r: ordering.sign(r, draft["id"], {}, DOCTOR, NOW, KB, RESOLVER)).blocked[0].key
    step(community, lambda r: ordering.sign(r, draft["id"], {key: Override(comment="Tolerated in 2024")}, DOCTOR,
                                            NOW, KB, RESOLVER))
    out = _give(community, draft["id"])
    assert out.status == "given"
    assert [(f.kind, f.severity.indicator) for f in out.findings] == [("allergy", "warning")]


def test_not_given_needs_a_reason_and_is_recorded_as_not_done(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    with pytest.raises(Invalid) as caught:
        _give(community, order, status="not-given")
    assert caught.value.issues[0].expression == ("reason",)
    refused = {"system": "http://snomed.info/sct", "code": "182895007", "display": "Drug declined by patient"}
    out = _give(community, order, status="not-given", reason=refused)
    [admin] = out.of_type("MedicationAdministration")
    assert admin["status"] == "not-done" and admin["statusReason"][0]["coding"][0]["code"] == "182895007"
    lines = step(community, lambda r: administration.chart(r, "p1", DAY, NOW))
    assert [s.state for s in lines[0].slots] == ["not-given"]


def test_a_delayed_dose_is_recorded_on_hold_and_can_be_given_later(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    out = _give(community, order, status="delayed", comment="Nil by mouth until 10:00")
    assert out.of_type("MedicationAdministration")[0]["status"] == "on-hold"
    assert _give(community, order, when=EIGHT + timedelta(minutes=50)).status == "given"


def test_a_stopped_order_is_not_given(community: Repository) -> None:
    order = _active(community, inpatient_order("Paracetamol 500mg tablets"))
    step(community, lambda r: ordering.stop(r, order, "Course complete", DOCTOR, NOW))
    out = _give(community, order)
    assert [f.kind for f in out.blocked] == ["order-not-active"]
    assert read(community, "MedicationRequest", order)["status"] == "stopped"
