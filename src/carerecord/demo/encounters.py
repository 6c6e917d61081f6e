"""Contacts with services: Encounter (GP, home visit, ambulance, hospital stay) and Appointment.

A past GP consultation usually has the fulfilled Appointment it came from; future ones are
booked Appointments with the patient and a practitioner as participants. An emergency admission
is an ambulance Encounter (class "field") followed by an inpatient Encounter that moves from the
emergency department to a ward.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes
from carerecord.demo.codes import Code
from carerecord.demo.organisations import Site, Staff
from carerecord.demo.record import Record, ref, stamp, weekday


def _participant(staff: Staff, kind: Code = codes.PARTICIPATION_PRIMARY) -> dict[str, Any]:
    return {"type": [kind.concept()], "individual": ref("Practitioner", staff.practitioner)}


def _reasons(reasons: list[str]) -> list[dict[str, str]]:
    return [ref("Condition", r) for r in reasons]


def encounter(rec: Record, *, klass: Code, start: str, end: str, provider: str, staff: Staff,
              kind: Code | None = None, kind_text: str | None = None, reasons: list[str] | None = None,
              locations: list[dict[str, Any]] | None = None,
              appointment: str | None = None) -> dict[str, Any]:
    """A finished Encounter; the caller adds it to the record when it wants it there."""
    enc: dict[str, Any] = {"resourceType": "Encounter", "id": rec.new_id("enc"), "status": "finished",
                           "class": klass.coding()}
    if kind is not None or kind_text:
        enc["type"] = [kind.concept(kind_text) if kind is not None else {"text": kind_text}]
    enc["subject"] = rec.subject()
    enc["participant"] = [_participant(staff)]
    if appointment:
        enc["appointment"] = [ref("Appointment", appointment)]
    enc["period"] = {"start": start, "end": end}
    if reasons:
        enc["reasonReference"] = _reasons(reasons)
    if locations:
        enc["location"] = locations
    enc["serviceProvider"] = ref("Organization", provider)
    return enc


def appointment(rec: Record, *, status: str, start: str, end: str, minutes: int, staff: Staff,
                location: str | None, kind: Code, reasons: list[str] | None = None,
                created: date, description: str) -> dict[str, Any]:
    """An Appointment between the patient and one practitioner (booked, fulfilled, ...)."""
    appt: dict[str, Any] = {"resourceType": "Appointment", "id": rec.new_id("appt"), "status": status,
                            "serviceType": [codes.SERVICE_GP.concept()],
                            "appointmentType": kind.concept()}
    if reasons:
        appt["reasonReference"] = _reasons(reasons)
    appt.update({"description": description, "start": start, "end": end, "minutesDuration": minutes,
                 "created": created.isoformat()})
    participants = [
        {"actor": rec.subject(), "required": "required", "status": "accepted"},
        {"type": [codes.PARTICIPATION_ATTENDER.concept()],
         "actor": ref("Practitioner", staff.practitioner), "required": "required", "status": "accepted"}]
    if location:
        participants.append({"actor": ref("Location", location), "required": "information-only",
                             "status": "accepted"})
    appt["participant"] = participants
    return appt


def gp_consultation(rec: Record, day: date, staff: Staff, kind: Code, reasons: list[str], *,
                    booked: bool = True, description: str = "GP consultation") -> dict[str, Any]:
    """A past consultation on weekday ``day`` at the surgery (or at the care home for residents).

    Adds the fulfilled Appointment (when ``booked``) and the Encounter; returns the Encounter."""
    p = rec.person
    minute = 8 * 60 + 30 + 10 * p.rng.randrange(0, 54)
    length = 15 if kind is codes.ENC_FOLLOW_UP else 10
    start, end = stamp(day, minute), stamp(day, minute + length)
    site: Site = p.care_home or p.practice
    appt_id = None
    if booked and p.care_home is None:
        appt_kind = {codes.ENC_SYMPTOM: codes.APPT_ROUTINE, codes.ENC_CHECK_UP: codes.APPT_CHECKUP}.get(
            kind, codes.APPT_FOLLOWUP)
        created = max(day - timedelta(days=p.rng.randint(0, 14)), p.birth)
        appt = appointment(rec, status="fulfilled", start=start, end=end, minutes=length, staff=staff,
                           location=p.practice.location, kind=appt_kind, created=created,
                           description=description)
        rec.add(appt)
        appt_id = appt["id"]
    klass = codes.CLASS_HOME if p.care_home else codes.CLASS_AMBULATORY
    loc = [{"location": ref("Location", site.location or ""), "status": "completed"}]
    return rec.add(encounter(rec, klass=klass, start=start, end=end, provider=p.practice.organization,
                             staff=staff, kind=kind, reasons=reasons, locations=loc,
                             appointment=appt_id))


def future_appointment(rec: Record, staff: Staff, reasons: list[str], kind: Code,
                       description: str) -> dict[str, Any]:
    """A booked appointment in the next six weeks, at the surgery."""
    p = rec.person
    day = weekday(p.today + timedelta(days=p.rng.randint(1, 42)), later=True)
    minute = 8 * 60 + 30 + 10 * p.rng.randrange(0, 54)
    length = 15 if kind is codes.APPT_FOLLOWUP else 10
    return rec.add(appointment(rec, status="booked", start=stamp(day, minute),
                               end=stamp(day, minute + length), minutes=length, staff=staff,
                               location=p.practice.location, kind=kind, reasons=reasons,
                               created=p.today - timedelta(days=p.rng.randint(0, 20)),
                               description=description))


def home_care_visit(rec: Record, agency: Site, carer: Staff) -> dict[str, Any]:
    """A recent home-care visit by a care worker (social care, class "home health")."""
    p = rec.person
    day = p.today - timedelta(days=p.rng.randint(1, 6))
    minute = 7 * 60 + 30 + 15 * p.rng.randrange(0, 8)
    return rec.add(encounter(rec, klass=codes.CLASS_HOME, start=stamp(day, minute),
                             end=stamp(day, minute + 30), provider=agency.organization, staff=carer,
                             kind_text="Home care visit: personal care and medicines prompt"))


def emergency_admission(rec: Record, day: date, ambulance: Site, paramedic: Staff | None,
                        ward_location: str, emergency_location: str, consultant: Staff,
                        provider: str, reason: str, stay: int) -> tuple[dict[str, Any], str]:
    """Ambulance conveyance (if ``paramedic``) and an inpatient stay; returns (inpatient, arrival)."""
    p = rec.person
    minute = p.rng.randrange(0, 20 * 60)
    arrival = stamp(day, minute + 70)
    if paramedic is not None:
        rec.add(encounter(rec, klass=codes.CLASS_FIELD, start=stamp(day, minute), end=arrival,
                          provider=ambulance.organization, staff=paramedic,
                          kind_text="Emergency ambulance response and conveyance to hospital",
                          reasons=[reason]))
    on_ward = stamp(day, min(minute + 70 + 240, 23 * 60 + 50))
    home = stamp(day + timedelta(days=stay), 14 * 60 + 10 * p.rng.randrange(0, 18))
    locations = [
        {"location": ref("Location", emergency_location), "status": "completed",
         "period": {"start": arrival, "end": on_ward}},
        {"location": ref("Location", ward_location), "status": "completed",
         "period": {"start": on_ward, "end": home}}]
    stay_enc = encounter(rec, klass=codes.CLASS_INPATIENT, start=arrival, end=home, provider=provider,
                         staff=consultant, kind=codes.ENC_EMERGENCY_ADMISSION, reasons=[reason],
                         locations=locations)
    stay_enc["hospitalization"] = {"admitSource": {"text": "Emergency department"},
                                   "dischargeDisposition": {"text": "Usual place of residence"}}
    return rec.add(stay_enc), arrival
