"""The role table maps job role codes to activities, as national RBAC does."""

from __future__ import annotations

from carerecord.access.role_table import LOCAL, ROLES, SDS
from carerecord.access.roles import Activity, RoleTable, default_table
from carerecord.demo.codes import JOB_ROLES


def test_every_job_role_of_the_demo_community_maps_to_a_role() -> None:
    table = default_table()
    unmapped = [key for key, code in JOB_ROLES.items() if table.for_codes([(code.system, code.code)]) is None]
    assert unmapped == []


def test_the_eight_roles_of_the_issue_are_in_the_table() -> None:
    assert {r.key for r in ROLES} == {"doctor", "nurse", "pharmacist", "paramedic", "care-worker", "receptionist",
                                      "privacy-officer", "administrator"}


def test_a_receptionist_books_appointments_but_does_not_read_the_clinical_record() -> None:
    desk = default_table().for_codes([(SDS, "R1730")])
    assert desk is not None and desk.may(Activity.MANAGE_APPOINTMENTS)
    assert not desk.may(Activity.READ_CLINICAL_RECORD) and not desk.may(Activity.EMERGENCY_ACCESS)


def test_only_pharmacists_verify_and_dispense_and_only_prescribers_prescribe() -> None:
    dispensers = {r.key for r in ROLES if r.may(Activity.VERIFY_AND_DISPENSE)}
    prescribers = {r.key for r in ROLES if r.may(Activity.PRESCRIBE)}
    assert dispensers == {"pharmacist"} and prescribers == {"doctor", "pharmacist"}


def test_a_care_worker_records_social_care_notes_but_cannot_prescribe_or_break_glass() -> None:
    carer = default_table()["care-worker"]
    assert carer.may(Activity.RECORD_SOCIAL_CARE_NOTES)
    assert not carer.may(Activity.PRESCRIBE) and not carer.may(Activity.EMERGENCY_ACCESS)


def test_the_privacy_officer_reviews_access_and_audit_but_reads_no_clinical_record() -> None:
    officer = default_table().for_codes([(LOCAL, "privacy-officer")])
    assert officer is not None and officer.may(Activity.REVIEW_ACCESS) and officer.may(Activity.VIEW_AUDIT)
    assert not officer.may(Activity.READ_CLINICAL_RECORD)


def test_security_labels_are_changed_by_clinicians_and_privacy_officers_only() -> None:
    own = {r.key for r in ROLES if r.may(Activity.LABEL_OWN_RECORDS)}
    registered = {r.key for r in ROLES if r.may(Activity.LABEL_REGISTERED_RECORDS)}
    assert own == {"doctor", "nurse", "pharmacist", "paramedic", "privacy-officer"}
    assert registered == {"privacy-officer"}  # the S-flag of the practice's patients, not clinicians'


def test_an_unknown_job_role_gets_no_role_at_all() -> None:
    assert default_table().for_codes([(SDS, "R9999"), ("http://example.org", "boss")]) is None


def test_a_code_mapped_to_two_roles_is_refused_when_the_table_is_built() -> None:
    doctor, nurse = default_table()["doctor"], default_table()["nurse"]
    clash = type(nurse)("clash", "Clash", doctor.codes, nurse.activities)
    try:
        RoleTable([doctor, clash])
    except ValueError as e:
        assert "maps to both" in str(e)
    else:
        raise AssertionError("a clash was accepted")


def test_every_type_an_activity_writes_is_an_r4_resource_type() -> None:
    from carerecord.access.policy import PATIENT_WRITES_BEYOND_COMPARTMENT, WRITES
    from carerecord.fhir import model

    named = set(PATIENT_WRITES_BEYOND_COMPARTMENT).union(*WRITES.values())
    assert named - set(model.resource_types()) == set()


def test_who_writes_prescriptions_and_clinical_notes() -> None:
    from carerecord.access.policy import may_write_type

    writers = {t: {r.key for r in ROLES if may_write_type(r.activities, t)}
               for t in ("MedicationRequest", "Condition", "Observation", "Appointment", "Patient", "Organization")}
    assert writers["MedicationRequest"] == {"doctor", "pharmacist"}
    assert writers["Condition"] == {"doctor", "nurse", "pharmacist", "paramedic"}
    assert writers["Observation"] == {"doctor", "nurse", "pharmacist", "paramedic", "care-worker"}
    assert writers["Appointment"] == {"doctor", "nurse", "receptionist"}
    assert writers["Patient"] == {"receptionist"}
    assert writers["Organization"] == {"administrator"}
