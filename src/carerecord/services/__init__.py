"""Clinical and care workflows (ARCHITECTURE.md, ``services/``): they take a repository or
plain FHIR resources and return resources or findings; they know nothing of HTTP."""
