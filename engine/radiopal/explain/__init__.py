"""Explanations for clinicians: why, why not, what would change it — as data, terminal text and an HTML report.

Built on demand from a :class:`~radiopal.result.Result`, never on the evaluate path::

    import radiopal
    from radiopal.explain import explain, render_text, render_html

    result = radiopal.load_rulebase().evaluate("patient.yaml")
    explanation = explain(result, therapy="sm153")   # or every therapy
    explanation.to_dict()                            # kb/schemas/explanation.schema.json
    print(render_text(explanation))
    html = render_html(explanation, result)          # one self-contained file
"""

from __future__ import annotations

from .build import check_therapy, explain
from .html import render_html
from .model import (
    AdvisoryNote,
    Change,
    ConditionExplanation,
    DataItem,
    Explanation,
    ReferenceNote,
    RuleExplanation,
    TherapyExplanation,
    Why,
    WhyNot,
)
from .text import render_text

__all__ = [
    "AdvisoryNote",
    "Change",
    "ConditionExplanation",
    "DataItem",
    "Explanation",
    "ReferenceNote",
    "RuleExplanation",
    "TherapyExplanation",
    "Why",
    "WhyNot",
    "check_therapy",
    "explain",
    "render_html",
    "render_text",
]
