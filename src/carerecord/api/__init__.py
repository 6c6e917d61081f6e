"""The FHIR REST edge (Starlette): thin adapters from HTTP to store interactions and back."""
