"""DATA: the care date of each type of the Patient compartment, to which ``Patient/$everything``'s
``start`` and ``end`` apply (http://hl7.org/fhir/R4/patient-operation-everything.html: "The date
range relates to care dates, not record currency dates - e.g. all records relating to care
provided in a certain date range. If no start date is provided, all records prior to the end date
are in scope." and the same for no end date).

R4 does not say which element is a type's care date; this table does, naming for each type the
search parameter of the official R4 definitions (so the index rows already hold its values):

- ``start``: when the care began (its whole range when it has no ``end``: an Observation's
  effective time, an Encounter's period, an open period running on);
- ``end``: when it ended, if another parameter says so (a Condition from onset to abatement; no
  end recorded means it goes on);
- ``ongoing``: a status parameter and the statuses in which the care goes on whatever its dates
  (an active repeat prescription authored last year is care in this year's range).

A resource of the range's care is one whose care period meets the range. A resource with no value
for its type's care date, and every type not named here (Patient, RelatedPerson, Device...), is
included whatever the range: the operation's definition says so, and an undated record is not
known to be outside it. Standing facts have no care date on purpose, so that a clinician asking
for last month's care still sees them: allergies and intolerances (the ``date`` of
AllergyIntolerance is when it was recorded, not when it stopped mattering) and family history.

Reviewing this table is a clinical-safety task (hazard H049): a type given the wrong care date
leaves records out of a date range that a clinician takes for the whole of that care.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CareDate:
    start: str
    end: str | None = None
    ongoing: tuple[str, tuple[str, ...]] | None = None  # (status parameter, statuses that go on)


_ACTIVE = ("active", "on-hold")

CARE_DATES: dict[str, CareDate] = {
    "Account": CareDate("period"),
    "AdverseEvent": CareDate("date"),
    "Appointment": CareDate("date"),
    "AuditEvent": CareDate("date"),
    "Basic": CareDate("created"),
    "CarePlan": CareDate("date", ongoing=("status", _ACTIVE)),
    "CareTeam": CareDate("date", ongoing=("status", ("proposed", "active", "suspended"))),
    "ChargeItem": CareDate("occurrence"),
    "Claim": CareDate("created"),
    "ClaimResponse": CareDate("created"),
    "ClinicalImpression": CareDate("date"),
    "Communication": CareDate("sent"),
    "CommunicationRequest": CareDate("authored", ongoing=("status", _ACTIVE)),
    "Composition": CareDate("date"),
    "Condition": CareDate("onset-date", "abatement-date",
                          ongoing=("clinical-status", ("active", "recurrence", "relapse"))),
    "Consent": CareDate("period"),
    "Contract": CareDate("issued"),
    "CoverageEligibilityRequest": CareDate("created"),
    "CoverageEligibilityResponse": CareDate("created"),
    "DetectedIssue": CareDate("identified"),
    "DeviceRequest": CareDate("event-date", ongoing=("status", _ACTIVE)),
    "DiagnosticReport": CareDate("date"),
    "DocumentManifest": CareDate("created"),
    "DocumentReference": CareDate("period"),
    "Encounter": CareDate("date"),
    "EpisodeOfCare": CareDate("date"),
    "ExplanationOfBenefit": CareDate("created"),
    "Flag": CareDate("date"),  # R4 has no Flag status parameter; an open period goes on
    "Goal": CareDate("start-date", ongoing=("lifecycle-status", ("proposed", "planned", "accepted", "active",
                                                                  "on-hold"))),
    "ImagingStudy": CareDate("started"),
    "Immunization": CareDate("date"),
    "ImmunizationEvaluation": CareDate("date"),
    "ImmunizationRecommendation": CareDate("date"),
    "Invoice": CareDate("date"),
    "List": CareDate("date"),
    "MeasureReport": CareDate("period"),
    "Media": CareDate("created"),
    "MedicationAdministration": CareDate("effective-time"),
    "MedicationDispense": CareDate("whenhandedover"),
    "MedicationRequest": CareDate("authoredon", ongoing=("status", _ACTIVE)),
    "MedicationStatement": CareDate("effective", ongoing=("status", ("active", "intended", "on-hold"))),
    "NutritionOrder": CareDate("datetime", ongoing=("status", _ACTIVE)),
    "Observation": CareDate("date"),
    "Procedure": CareDate("date"),
    "Provenance": CareDate("when"),
    "QuestionnaireResponse": CareDate("authored"),
    "RequestGroup": CareDate("authored"),
    "ResearchSubject": CareDate("date"),
    "RiskAssessment": CareDate("date"),
    "Schedule": CareDate("date"),
    "ServiceRequest": CareDate("authored", ongoing=("status", _ACTIVE)),
    "Specimen": CareDate("collected"),
    "SupplyRequest": CareDate("date"),
    "Task": CareDate("authored-on", ongoing=("status", ("requested", "received", "accepted", "ready",
                                                        "in-progress", "on-hold"))),
    "VisionPrescription": CareDate("datewritten"),
}
