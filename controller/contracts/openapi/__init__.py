"""The HTTP API's OpenAPI 3.1 document, built from the models its answers are made of.

:mod:`.answers` models the bodies no published contract covered; :mod:`.operations` says,
route by route, what each takes and answers (read from the routes in
:mod:`controller.adapters`); :mod:`.document` assembles them with the read API's models into
``schemas/openapi.json``, which ``rollout-controller schemas export`` writes beside the
JSON Schemas and ``--check`` holds to the models.
"""

from controller.contracts.openapi.document import OPENAPI_FILE, Schema, openapi_document

__all__ = ["OPENAPI_FILE", "Schema", "openapi_document"]
