"""carerecord: an open-source integrated health and social care record (FHIR R4, UK Core)."""

__version__ = "0.1.0"
