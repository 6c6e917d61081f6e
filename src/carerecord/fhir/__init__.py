"""Pure FHIR R4 knowledge: model, validation, search parameters, formats. No I/O beyond reading
the generated definitions shipped with the package."""
