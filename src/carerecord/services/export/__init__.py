"""FHIR Bulk Data export (http://hl7.org/fhir/uv/bulkdata/STU2/export.html): the kick-off's
parameters and who may ask (``request.py``), the job's folder under the data directory, which
every worker process reads and writes (``jobs.py``), the run itself through the guard, in one
database snapshot (``runner.py``), and the process's exports (``service.py``).

ARCHITECTURE.md puts bulk export under ``analytics/``, an edge nothing may import; the
``$export`` operation is an API route, so the job is a service below ``api/`` (and below
``analytics/`` when it is built). It knows nothing of HTTP.
"""

from carerecord.services.export.request import ExportRequest, parameters, parse_request, query_parameters
from carerecord.services.export.service import Exports, JobStatus, OutputFile

__all__ = ["ExportRequest", "Exports", "JobStatus", "OutputFile", "parameters", "parse_request", "query_parameters"]
