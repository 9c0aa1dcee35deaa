"""FHIR R4 input for radiopal: map a Bundle to the contract §A patient document.

Needs the ``fhir`` extra (``pip install 'radiopal[fhir]'``, i.e. fhir.resources ≥ 8, parsed as R4B).
Importing this package does not import fhir.resources; the first mapping does.

Typical use::

    from radiopal.fhir import bundle_to_document
    mapped = bundle_to_document("patient-bundle.json", evaluation_date="2025-06-02")
    mapped.document            # contract §A, ready for the engine
    mapped.provenance["labs.platelets"]   # {"resource": "Observation/plt", "fullUrl": "urn:uuid:...", ...}

The code table is ``kb/fhir/codes.yaml``; the radiopal CodeSystem for facts without a standard code is
``kb/fhir/radiopal-codesystem.json`` (``http://radiopal.example/fhir/CodeSystem/radiopal``).
"""

from __future__ import annotations

from .codes import RADIOPAL_SYSTEM, CodeRow, CodeTable, default_code_table_path, load_code_table
from .document import contract_field_paths
from .mapping import SCHEMA_VERSION, MappedDocument, bundle_to_document
from .parse import read_bundle

__all__ = [
    "RADIOPAL_SYSTEM",
    "SCHEMA_VERSION",
    "CodeRow",
    "CodeTable",
    "MappedDocument",
    "bundle_to_document",
    "contract_field_paths",
    "default_code_table_path",
    "load_code_table",
    "read_bundle",
]
