"""Medicines safety: a dm+d-shaped terminology, a pluggable knowledge base, and checks
(allergy, interaction, duplicate therapy, dose) that return explained findings.

The checks are pure functions over FHIR resources; ``cds`` exposes them as a CDS Hooks 2.0
service (https://cds-hooks.hl7.org/2.0/) without knowing HTTP. The bundled knowledge base is a
starter written from public sources: a deployment should load a licensed one (see
``knowledge.KnowledgeBase``)."""
