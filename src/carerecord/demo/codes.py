"""Every code the demo community uses, each with where it was checked.

Sources (all under ``shared/data`` of the project workspace):

- ``uk-core/examples/*.xml``: the UK Core R4 example resources (UKC in the comments).
- ``nhs-eps/``: NHS England EPS FHIR API examples; file paths are relative to that folder (EPS).
- ``dmd-sample/dmd/1/f_vmp2_3010419.xml``: a cut-down real dm+d release (DMD).
- ``synthea-r4/*.json.gz``: Synthea patient bundles; SNOMED codes only, US-flavoured (SYN).
- ``uk-core/codesystems/CodeSystem-UKCore-SDSJobRoleName.xml`` (SDS; retired in UK Core 2.x
  but the only job-role code list held locally, so it is what PractitionerRole.code uses).
- ``fhir-r4-definitions``: the HL7 code systems shipped with R4 (HL7).
- Codes marked REASONED are well-known SNOMED CT concepts that none of those files hold; they were
  checked against their use in public FHIR code (NHS SCR guidance, QOF clusters) and by reasoning.
- ``services/medicines/data/medicines.json``: the bundled medicines knowledge base, whose dm+d VTM
  codes were matched by exact name against a dm+d release (KB).
- Public NHS code, checked by exact code and term (PUB, with the project named):
  MAVIS = NHS England's Manage vaccinations in schools (github.com/nhsuk/manage-vaccinations-in-schools,
  ``app/models/programme.rb`` and ``config/vaccines.yml``); IMMS = NHS England's Immunisation FHIR API
  and its test data (github.com/NHSDigital/immunisation-fhir-api, NHSDigital/ravs-tests); PBCL = the
  NHS Pathology Bounded Code List observables (UK Core ``UKCore-PathologyBoundedCodeListObservables``),
  seen with the same term in OpenSAFELY codelists built from English GP records and in NHS England's
  NHS Health Check online terminology page; MII = the German Medical Informatics Initiative lung
  function module (SNOMED CT international observables).

The demo uses no other code: ``tests/demo/test_codes.py`` checks every coding it generates
against :func:`known_codings`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DMD = "https://dmd.nhs.uk"  # what UK Core uses for dm+d (UKC MedicationRequest-Amoxicillin)
UCUM = "http://unitsofmeasure.org"
SDS_JOB_ROLE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
HL7_TERM = "http://terminology.hl7.org/CodeSystem/"


class Code(NamedTuple):
    """One coded concept: a system, a code and its display."""

    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        """A fresh FHIR Coding (a new dict each call, so resources never share sub-objects)."""
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self, text: str | None = None) -> dict[str, Any]:
        """A fresh CodeableConcept holding this one coding."""
        out: dict[str, Any] = {"coding": [self.coding()]}
        if text:
            out["text"] = text
        return out


def sct(code: str, display: str) -> Code:
    return Code(SNOMED, code, display)


def hl7(system: str, code: str, display: str) -> Code:
    return Code(HL7_TERM + system, code, display)


# --- Conditions (Condition.code) -------------------------------------------------------------
CONDITIONS: dict[str, Code] = {
    "dementia": sct("52448006", "Dementia"),  # REASONED (brief; SNOMED "Dementia (disorder)")
    "alzheimers": sct("26929004", "Alzheimer's disease"),  # SYN
    "hypertension": sct("59621000", "Essential hypertension"),  # REASONED (QOF CBP measure code)
    "diabetes_t2": sct("44054006", "Type 2 diabetes mellitus"),  # SYN ("Diabetes"), FSN type 2
    "asthma": sct("195967001", "Asthma"),  # SYN
    "copd": sct("13645005", "Chronic obstructive lung disease"),  # REASONED (FSN, UK term)
    "af": sct("49436004", "Atrial fibrillation"),  # SYN
    "heart_failure": sct("84114007", "Heart failure"),  # REASONED
    "ckd3": sct("433144002", "Chronic kidney disease stage 3"),  # REASONED (QOF renal clusters)
    "depression": sct("35489007", "Depressive disorder"),  # REASONED
    "oa_knee": sct("239873007", "Osteoarthritis of knee"),  # SYN
    "osteoporosis": sct("64859006", "Osteoporosis"),  # SYN
    "stroke": sct("230690007", "Stroke"),  # SYN
    "history_mi": sct("399211009", "History of myocardial infarction"),  # SYN
    "atopic_dermatitis": sct("24079001", "Atopic dermatitis"),  # SYN
    # acute problems seen in general practice
    "otitis_media": sct("65363002", "Otitis media"),  # UKC MedicationStatement-Amoxicillin, SYN
    "viral_sinusitis": sct("444814009", "Viral sinusitis"),  # SYN
    "strep_throat": sct("43878008", "Streptococcal sore throat"),  # SYN
    "acute_bronchitis": sct("10509002", "Acute bronchitis"),  # SYN
    # reasons for emergency admission
    "pneumonia": sct("233604007", "Pneumonia"),  # SYN
    "hip_fracture": sct("359817006", "Closed fracture of hip"),  # SYN
}

CLINICAL_ACTIVE = hl7("condition-clinical", "active", "Active")  # HL7
CLINICAL_RESOLVED = hl7("condition-clinical", "resolved", "Resolved")  # HL7
VERIFICATION_CONFIRMED = hl7("condition-ver-status", "confirmed", "Confirmed")  # HL7
CATEGORY_PROBLEM = hl7("condition-category", "problem-list-item", "Problem List Item")  # HL7
CATEGORY_DIAGNOSIS = hl7("condition-category", "encounter-diagnosis", "Encounter Diagnosis")  # HL7

# --- Allergies (AllergyIntolerance.code, reaction.manifestation) -------------------------------
ALLERGENS: dict[str, tuple[Code, str]] = {  # key -> (code, AllergyIntolerance.category)
    "penicillin": (sct("764146007", "Penicillin"), "medication"),  # REASONED (substance)
    "amoxicillin": (sct("372687004", "Amoxicillin"), "medication"),  # UKC AllergyIntolerance-Amoxicillin
    "house_dust_mite": (sct("232350006", "House dust mite allergy"), "environment"),  # SYN
    "grass_pollen": (sct("418689008", "Allergy to grass pollen"), "environment"),  # SYN
    "latex": (sct("300916003", "Latex allergy"), "environment"),  # SYN
    "nut": (sct("91934008", "Allergy to nut"), "food"),  # SYN
    "bee_venom": (sct("424213003", "Allergy to bee venom"), "environment"),  # SYN
}
NO_KNOWN_ALLERGY = sct("716186003", "No known allergy")  # REASONED (UK Core guidance on NKA)
REACTIONS: dict[str, Code] = {
    "urticaria": sct("247472004", "Urticarial rash"),  # UKC AllergyIntolerance-Amoxicillin
    "anaphylaxis": sct("39579001", "Anaphylaxis"),  # REASONED
    "skin_eruption": sct("271807003", "Eruption of skin"),  # REASONED
}
PENICILLIN_CLASS = frozenset({"penicillin", "amoxicillin"})
ALLERGY_ACTIVE = hl7("allergyintolerance-clinical", "active", "Active")  # HL7, UKC
ALLERGY_CONFIRMED = hl7("allergyintolerance-verification", "confirmed", "Confirmed")  # HL7, UKC

# --- Routes and dispensing units --------------------------------------------------------------
ROUTE_ORAL = sct("26643006", "Oral")  # UKC MedicationRequest-Amoxicillin, EPS
ROUTE_INHALATION = sct("18679011000001101", "Inhalation")  # EPS primary-care/acute-and-repeat-prescribing
UNIT_TABLET = sct("428673006", "tablet")  # EPS dispenseRequest.quantity
UNIT_DOSE = sct("3317411000001100", "dose")  # EPS (Salbutamol inhaler quantity)
UNIT_ML = sct("258773002", "ml")  # EPS spec/errors/example-b-spine-error-patient-deceased
UNIT_GRAM = sct("258682000", "gram")  # EPS spec/errors/example-b-spine-error-patient-deceased


class Medicine(NamedTuple):
    """A dm+d product with the prescribing details the demo gives it."""

    code: Code
    dose_text: str
    frequency: int  # Timing.repeat.frequency per day
    as_needed: bool
    route: Code | None
    quantity: float  # dispenseRequest.quantity.value
    unit: Code | None  # dispenseRequest unit (SNOMED unit of presentation), None: text only
    unit_text: str
    days: int  # expected supply duration (dispenseRequest.expectedSupplyDuration)
    text: str | None = None  # the product, when ``code`` is a VTM (prescribing at VTM level)


def _dmd(code: str, display: str) -> Code:
    return Code(DMD, code, display)


# dm+d codes: only products found in the local sources, with their exact display names.
MEDICINES: dict[str, Medicine] = {
    # EPS spec/dispensing/dispense-notification/acute-primary-example-05-req.json
    "amlodipine": Medicine(_dmd("13892511000001100", "Amlodipine 5mg/5ml oral solution"),
                           "5ml to be taken once daily", 1, False, ROUTE_ORAL, 150, UNIT_ML, "ml", 30),
    # EPS spec/dispensing/dispense-notification/acute-primary-example-05-req.json
    "furosemide": Medicine(_dmd("317972000", "Furosemide 40mg tablets"),
                           "One tablet to be taken each morning", 1, False, ROUTE_ORAL, 28,
                           UNIT_TABLET, "tablet", 28),
    # EPS primary-care/acute-and-repeat-prescribing/1-Prepare-Request-200_OK.json
    "salbutamol": Medicine(_dmd("39113611000001102", "Salbutamol 100micrograms/dose inhaler CFC free"),
                           "Two puffs to be inhaled up to four times a day when required", 4, True,
                           ROUTE_INHALATION, 200, UNIT_DOSE, "dose", 30),
    # EPS spec/errors/example-b-spine-error-patient-deceased/PrepareRequest-FhirMessageUnsigned.json
    "budesonide": Medicine(_dmd("320567001", "Budesonide 200micrograms/dose dry powder inhaler"),
                           "ONE puff to be inhaled TWICE a day", 2, False, ROUTE_INHALATION, 200,
                           UNIT_DOSE, "dose", 100),
    # EPS primary-care/acute-and-repeat-prescribing/1-Prepare-Request-200_OK.json
    "paracetamol": Medicine(_dmd("322237000", "Paracetamol 500mg soluble tablets"),
                            "Two tablets up to four times a day when required", 4, True, ROUTE_ORAL,
                            100, UNIT_TABLET, "tablet", 12),
    # EPS primary-care/acute/nominated-pharmacy/medical-prescriber/1-Prepare-Request-200_OK.json
    "co_codamol": Medicine(_dmd("322341003", "Co-codamol 30mg/500mg tablets"),
                           "One or two tablets up to four times a day when required", 4, True,
                           ROUTE_ORAL, 56, UNIT_TABLET, "tablet", 7),
    # DMD f_vmp2_3010419.xml (VPID 22480211000001104)
    "diclofenac_gel": Medicine(_dmd("22480211000001104", "Diclofenac 2.32% gel"),
                               "Apply to the painful knee up to three times a day", 3, False, None, 100,
                               UNIT_GRAM, "gram", 30),
    # EPS spec/errors/example-b-spine-error-patient-deceased/PrepareRequest-FhirMessageUnsigned.json
    "betamethasone": Medicine(_dmd("374372000", "Betamethasone valerate 0.1% cream"),
                              "Apply sparingly to the affected area once or twice a day", 2, False, None,
                              100, UNIT_GRAM, "gram", 14),
    # UKC MedicationRequest-Amoxicillin
    "amoxicillin_500": Medicine(_dmd("39732411000001106", "Amoxicillin 500mg capsules"),
                                "One capsule to be taken three times a day for 5 days", 3, False,
                                ROUTE_ORAL, 15, None, "capsule", 5),
    # UKC MedicationStatement-Amoxicillin, EPS acute nominated-pharmacy examples
    "amoxicillin_250": Medicine(_dmd("39732311000001104", "Amoxicillin 250mg capsules"),
                                "One capsule to be taken three times a day for 5 days", 3, False,
                                ROUTE_ORAL, 15, None, "capsule", 5),
    # UKC MedicationRequest-Doxycycline
    "doxycycline": Medicine(_dmd("41948311000001104", "Doxycycline 100mg capsules"),
                            "Two capsules on the first day, then one capsule daily for 4 days", 1, False,
                            ROUTE_ORAL, 6, None, "capsule", 5),
    # EPS primary-care/acute/nominated-pharmacy/medical-prescriber/1-Prepare-Request-200_OK.json
    "azithromycin": Medicine(_dmd("324252006", "Azithromycin 250mg capsules"),
                             "Two capsules once daily for 3 days", 1, False, ROUTE_ORAL, 6, None,
                             "capsule", 3),
    # Long-term medicines with no product in the local sources: coded at dm+d VTM level (the
    # moiety's SNOMED CT code, KB), the product in the text, as medicines.py's showcase does.
    # 56 days a supply: many practices issue stable long-term tablets two months at a time.
    # Amlodipine tablets (NICE NG136: a calcium-channel blocker), the long-term repeat; the
    # oral solution above is the EPS example's product, kept for medicines.py's repeats showcase.
    "amlodipine_tablets": Medicine(Code(SNOMED, "108537001", "Amlodipine"), "One tablet once a day", 1, False,
                                   ROUTE_ORAL, 56, UNIT_TABLET, "tablet", 56, "Amlodipine 5mg tablets"),
    # Metformin: NICE NG28, first-line for type 2 diabetes.
    "metformin": Medicine(Code(SNOMED, "109081006", "Metformin"), "One tablet twice a day with meals", 2,
                          False, ROUTE_ORAL, 112, UNIT_TABLET, "tablet", 56, "Metformin 500mg tablets"),
    # Atorvastatin: NICE NG238 (20 mg for primary prevention, 80 mg after MI or stroke).
    "atorvastatin_20": Medicine(Code(SNOMED, "108600003", "Atorvastatin"), "One tablet at night", 1, False,
                                ROUTE_ORAL, 56, UNIT_TABLET, "tablet", 56, "Atorvastatin 20mg tablets"),
    "atorvastatin_80": Medicine(Code(SNOMED, "108600003", "Atorvastatin"), "One tablet at night", 1, False,
                                ROUTE_ORAL, 56, UNIT_TABLET, "tablet", 56, "Atorvastatin 80mg tablets"),
}
COURSE_ACUTE = hl7("medicationrequest-course-of-therapy", "acute", "Short course (acute) therapy")
COURSE_CONTINUOUS = hl7("medicationrequest-course-of-therapy", "continuous",
                        "Continuous long term therapy")
CATEGORY_COMMUNITY = hl7("medicationrequest-category", "community", "Community")
CATEGORY_DISCHARGE = hl7("medicationrequest-category", "discharge", "Discharge")
CATEGORY_INPATIENT = hl7("medicationrequest-category", "inpatient", "Inpatient")
# dm+d VTMs of the medicines showcase (demo/medicines.py), as in the bundled medicines knowledge
# base (services/medicines/data/medicines.json, matched against a dm+d release)
VTMS: dict[str, Code] = {"warfarin": sct("48603004", "Warfarin"), "simvastatin": sct("96304005", "Simvastatin"),
                         "omeprazole": sct("25673006", "Omeprazole")}

# --- Observations (UKC vital signs examples give both SNOMED and LOINC codings) -------------
OBS_BP = (sct("75367002", "Blood pressure"),  # UKC Bundle-NEWS2Observations
          Code(LOINC, "85354-9", "Blood pressure panel with all children optional"))
OBS_SYSTOLIC = (sct("72313002", "Systolic arterial pressure"),  # UKC Bundle-NEWS2Observations
                Code(LOINC, "8480-6", "Systolic blood pressure"))
OBS_DIASTOLIC = (sct("1091811000000102", "Diastolic arterial pressure"),  # UKC NEWS2 bundle
                 Code(LOINC, "8462-4", "Diastolic blood pressure"))
OBS_HEART_RATE = (sct("364075005", "Heart rate"),  # UKC Bundle-NEWS2Observations
                  Code(LOINC, "8867-4", "Heart rate"))
OBS_WEIGHT = (sct("27113001", "Body weight"),  # UKC Observation-VitalSigns-BodyWeight
              Code(LOINC, "29463-7", "Body weight"))
OBS_HEIGHT = (sct("50373000", "Body height measure"),  # UKC Observation-VitalSigns-BodyHeight
              Code(LOINC, "8302-2", "Body height"))
OBS_BMI = (sct("60621009", "Body mass index"),  # UKC Observation-VitalSigns-BMI
           Code(LOINC, "39156-5", "Body mass index (BMI) [Ratio]"))
# REASONED: the IFCC HbA1c code of the QOF cluster IFCCHBAM_COD, reported in mmol/mol in the UK
OBS_HBA1C = (sct("999791000000106", "Haemoglobin A1c level - International Federation of Clinical "
                 "Chemistry and Laboratory Medicine standardised"),)
# UCUM units of the Observation and Duration quantities: code -> human unit
UNITS: dict[str, Code] = {code: Code(UCUM, code, unit) for code, unit in (
    ("mm[Hg]", "mmHg"), ("/min", "beats/minute"), ("kg", "kg"), ("cm", "cm"), ("kg/m2", "kg/m2"),
    ("mmol/mol", "mmol/mol"), ("d", "days"), ("mL/min/{1.73_m2}", "mL/min/1.73m2"),
    ("umol/L", "micromol/L"), ("mmol/L", "mmol/L"), ("mg/mmol", "mg/mmol"), ("L/min", "L/min"), ("L", "L"),
    ("{score}", "score"), ("mL", "mL"))}
OBS_CAT_VITAL = hl7("observation-category", "vital-signs", "Vital Signs")
OBS_CAT_LAB = hl7("observation-category", "laboratory", "Laboratory")
OBS_CAT_SOCIAL = hl7("observation-category", "social-history", "Social History")  # HL7
OBS_CAT_EXAM = hl7("observation-category", "exam", "Exam")  # HL7
OBS_CAT_SURVEY = hl7("observation-category", "survey", "Survey")  # HL7
# eGFR by CKD-EPI (LOINC), which the medicines dose checks read (services/medicines/patient.py)
OBS_EGFR = (Code(LOINC, "62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
                 "Plasma or Blood by Creatinine-based formula (CKD-EPI)"),
            # PBCL: what an English lab sends (CKD-EPI, as NICE NG203 asks since 2021)
            sct("1011481000000105", "eGFR (estimated glomerular filtration rate) using creatinine Chronic Kidney "
                "Disease Epidemiology Collaboration equation per 1.73 square metres"))
# Laboratory results of long-term condition reviews. English GP records hold pathology as the
# SNOMED CT observables of the Pathology Bounded Code List, so these are SNOMED CT (PBCL); eGFR
# also carries LOINC, which the medicines dose checks read (services/medicines/patient.py).
OBS_CREATININE = (sct("1000731000000107", "Serum creatinine level"),)  # PBCL
OBS_CHOLESTEROL = (sct("1005671000000105", "Serum cholesterol level"),)  # PBCL
OBS_HDL = (sct("1005681000000107", "Serum high density lipoprotein cholesterol level"),)  # PBCL
OBS_URINE_ACR = (sct("1023491000000104", "Urine albumin:creatinine ratio"),)  # PBCL
# Respiratory and memory measurements at reviews
OBS_PEAK_FLOW = (sct("18491006", "Peak expiratory flow rate"),)  # MII (observable entity)
OBS_FEV1 = (sct("59328004", "Forced expired volume in 1 second"),)  # MII (observable entity)
OBS_MMSE = (Code(LOINC, "72106-8", "Total score [MMSE]"),)  # SYN (Mini-Mental State Examination)
# Smoking status: the LOINC question (SYN, its current LOINC name) answered with the SNOMED CT
# findings of the QOF smoking cluster (SMOK_COD), as GP records code them (REASONED; the same
# codes and terms are in NHS England's NHS Health Check online terminology page).
OBS_SMOKING = (Code(LOINC, "72166-2", "Tobacco smoking status"),)
SMOKING: dict[str, Code] = {"never": sct("266919005", "Never smoked tobacco"), "ex": sct("8517006", "Ex-smoker"),
                            "current": sct("77176002", "Smoker")}
# A lab report grouping results (UKC DiagnosticReport-Lab-DiagnosticStudiesReport)
REPORT_LAB = sct("721981007", "Diagnostic studies report")
REPORT_CAT_LAB = Code("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")

# --- Immunisations ----------------------------------------------------------------------------
# Immunization.vaccineCode holds the dm+d product (UKC Immunization examples use https://dmd.nhs.uk);
# the procedure goes in UK Core's Extension-UKCore-VaccinationProcedure (UKC example). One product
# per programme stands for the season's: the demo does not change products from year to year.
VACCINATION_PROCEDURE = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-VaccinationProcedure"
VACCINATIONS: dict[str, Code] = {  # programme -> procedure
    "flu": sct("822851000000102", "Seasonal influenza vaccination"),  # MAVIS, IMMS
    "covid": sct("1362591000000103", "Immunisation course to maintain protection against severe acute "
                 "respiratory syndrome coronavirus 2"),  # IMMS (the seasonal booster's procedure)
    "hpv": sct("761841000", "Administration of vaccine product containing only Human papillomavirus antigen"),  # MAVIS
    "menacwy": sct("871874000", "Administration of vaccine product containing only Neisseria meningitidis "
                   "serogroup A, C, W135 and Y antigens"),  # MAVIS
    "td_ipv": sct("866186002", "Administration of vaccine product containing only Clostridium tetani and "
                  "Corynebacterium diphtheriae and Human poliovirus antigens"),  # MAVIS
}
VACCINES: dict[str, Code] = {  # product key -> dm+d product
    # MAVIS (an earlier config/vaccines.yml) and ravs-tests: offered to people aged 65 and over
    "flu_adjuvanted": _dmd("40085311000001103", "Adjuvanted quadrivalent influenza vaccine (surface antigen, "
                           "inactivated) suspension for injection 0.5ml pre-filled syringes (Seqirus UK Ltd)"),
    # MAVIS: adults under 65 in a clinical risk group
    "flu_cell": _dmd("43207411000001105", "Cell-based trivalent influenza vaccine (surface antigen, inactivated) "
                     "suspension for injection 0.5ml pre-filled syringes (Seqirus UK Ltd)"),
    # MAVIS: the children's nasal spray (live attenuated)
    "flu_nasal": _dmd("43208811000001106", "Fluenz (trivalent) vaccine nasal suspension 0.2ml unit dose "
                      "(AstraZeneca UK Ltd)"),
    # IMMS test data and ravs-tests (the AMP codes of the JN.1 vaccines)
    "covid_pfizer": _dmd("43111411000001101", "Comirnaty JN.1 COVID-19 mRNA Vaccine 30micrograms/0.3ml dose "
                         "dispersion for injection multidose vials (Pfizer Ltd)"),
    "covid_moderna": _dmd("42985911000001104", "Spikevax JN.1 COVID-19 mRNA Vaccine 0.1mg/ml dispersion for "
                          "injection multidose vials (Moderna, Inc)"),
    "hpv": _dmd("33493111000001108", "Gardasil 9 vaccine suspension for injection 0.5ml pre-filled syringes "
                "(Merck Sharp & Dohme (UK) Ltd)"),  # MAVIS
    "menacwy": _dmd("39779611000001104", "MenQuadfi vaccine solution for injection 0.5ml vials (Sanofi)"),  # MAVIS
    "td_ipv": _dmd("7374511000001107", "Revaxis vaccine suspension for injection 0.5ml pre-filled syringes "
                   "(Sanofi) 1 pre-filled disposable injection"),  # MAVIS
}
SITE_LEFT_UPPER_ARM = sct("368208006", "Left upper arm structure")  # UKC Immunization-Sn-LeftUpperArmStructure
ROUTE_INTRAMUSCULAR = sct("78421000", "Intramuscular route")  # IMMS, MAVIS
ROUTE_NASAL = sct("46713006", "Nasal route")  # MAVIS (its nasal flu export)

# --- Encounters, appointments, flags ------------------------------------------------------------
ENC_SYMPTOM = sct("185345009", "Encounter for symptom")  # SYN
ENC_FOLLOW_UP = sct("390906007", "Follow-up encounter")  # SYN
ENC_CHECK_UP = sct("185349003", "Encounter for check up")  # SYN
ENC_EMERGENCY_ADMISSION = sct("183452005", "Emergency hospital admission")  # SYN ("Encounter Inpatient")
CLASS_AMBULATORY = Code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")
CLASS_INPATIENT = Code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP", "inpatient encounter")
CLASS_FIELD = Code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "FLD", "field")
CLASS_HOME = Code("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HH", "home health")
APPT_ROUTINE = hl7("v2-0276", "ROUTINE", "Routine appointment - default if not valued")  # HL7
APPT_FOLLOWUP = hl7("v2-0276", "FOLLOWUP", "A follow up visit from a previous appointment")  # HL7, UKC
APPT_CHECKUP = hl7("v2-0276", "CHECKUP", "A routine check-up, such as an annual physical")  # HL7
SERVICE_GP = hl7("service-type", "124", "General Practice")  # HL7
PARTICIPATION_ATTENDER = Code("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND",
                              "attender")  # HL7, UKC Appointment example
PARTICIPATION_PRIMARY = Code("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF",
                             "primary performer")  # HL7
# DNACPR: a Flag, because it is a clinical decision that must be seen at once (ambulance crews,
# emergency view), not the person's own consent. NHS SCR inclusion dataset advises this code.
DNACPR = sct("450476008", "Not for attempted cardiopulmonary resuscitation")  # REASONED (SCR)
FLAG_ADVANCE_DIRECTIVE = hl7("flag-category", "advance-directive", "Advance Directive")  # HL7
NEXT_OF_KIN = hl7("v2-0131", "N", "Next-of-Kin")  # HL7
ORG_PROVIDER = hl7("organization-type", "prov", "Healthcare Provider")  # HL7
ORG_DEPARTMENT = hl7("organization-type", "dept", "Hospital Department")  # HL7


def _role(code: str, display: str) -> Code:
    return Code("http://terminology.hl7.org/CodeSystem/v3-RoleCode", code, display)


LOC_HOSPITAL = _role("HOSP", "Hospital")  # HL7 v3-RoleCode
LOC_WARD = _role("HU", "Hospital unit")
LOC_EMERGENCY = _role("ER", "Emergency room")
LOC_PHARMACY = _role("PHARM", "Pharmacy")
LOC_PRIMARY_CARE = _role("PC", "Primary care clinic")
LOC_CARE_HOME = _role("NCCF", "Nursing or custodial care facility")
LOC_AMBULANCE = _role("AMB", "Ambulance")

# --- Staff job roles (SDS) -------------------------------------------------------------------
JOB_ROLES: dict[str, Code] = {k: Code(SDS_JOB_ROLE, c, d) for k, (c, d) in {
    "gp": ("R0260", "General Medical Practitioner"),
    "practice_nurse": ("R0620", "Staff Nurse"),
    "hca": ("R1480", "Healthcare Assistant"),
    "receptionist": ("R1730", "Receptionist"),
    "consultant": ("R0050", "Consultant"),
    "registrar": ("R0110", "Specialist Registrar"),
    "ward_sister": ("R0610", "Sister/Charge Nurse"),
    "staff_nurse": ("R0620", "Staff Nurse"),
    "pharmacist": ("R1290", "Pharmacist"),
    "paramedic": ("R1070", "Paramedic"),
    "care_home_manager": ("R9710", "Residential Manager"),
    "care_worker": ("R9725", "Residential Care Staff"),
    "home_care_organiser": ("R9620", "Home Care Organiser"),
    "home_carer": ("R9630", "Home Help"),
}.items()}


def all_codes() -> list[Code]:
    """Every Code defined in this module (tables included): the whole vocabulary of the demo."""
    return [item for value in list(globals().values()) for item in _codes_in(value)]


def known_codings() -> frozenset[tuple[str, str]]:
    """Every (system, code) pair of :func:`all_codes`."""
    return frozenset((c.system, c.code) for c in all_codes())


def _codes_in(value: object) -> list[Code]:
    if isinstance(value, Code):
        return [value]
    if isinstance(value, Medicine):
        return [c for c in (value.code, value.route, value.unit) if c is not None]
    if isinstance(value, dict):
        return [c for v in value.values() for c in _codes_in(v)]
    if isinstance(value, tuple):
        return [c for v in value for c in _codes_in(v)]
    return []
