"""radiopal — rules-based decision support for painful bone metastases, with an emphasis on radionuclide therapy.

radiopal supports clinicians; it does not prescribe. Every decision comes with the rules, thresholds and citations
behind it, and every fact resting on an unverified source is marked ``[U]``.

Typical use::

    import radiopal
    rulebase = radiopal.load_rulebase()          # compile the shipped rules once
    result = rulebase.evaluate("patient.yaml")   # a path, or a dict following contract §A
    result.to_dict()                             # contract §B
    result.graph.to_dict()                       # the reasoning graph as plain data
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import EngineError, InputError, Problem, RadiopalError, RulebaseError, ScenarioError

__version__ = "0.1.0"
CONTRACT_VERSION = "1.1"
DISCLAIMER = (
    "radiopal is decision support for clinicians, not a prescriber. It does not replace clinical judgement, the "
    "product labels or the guidelines it cites; facts marked [U] are unverified."
)

__all__ = [
    "CONTRACT_VERSION",
    "DISCLAIMER",
    "EngineError",
    "InputError",
    "Problem",
    "RadiopalError",
    "RuleBase",
    "RulebaseError",
    "ScenarioError",
    "__version__",
    "evaluate_fhir",
    "load_patient",
    "load_rulebase",
]

if TYPE_CHECKING:
    from .api import RuleBase, evaluate_fhir, load_patient, load_rulebase


def __getattr__(name: str) -> Any:
    # The API module pulls in the compiler; import it on first use so `import radiopal` stays cheap and side-effect free.
    if name in {"RuleBase", "load_rulebase", "load_patient", "evaluate_fhir"}:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'radiopal' has no attribute {name!r}")
