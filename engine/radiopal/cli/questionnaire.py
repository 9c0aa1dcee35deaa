"""``radiopal questionnaire PATIENT``: the data radiopal is missing for one patient, as a FHIR Questionnaire.

An EHR renders it, the clinician answers, and ``radiopal recommend PATIENT --answers QR`` evaluates with the answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..fileio import write_atomic
from ._common import add_rules_option, gated_rulebase
from .recommend import add_fhir_options, evaluate_argument


def register(sub: Any) -> None:
    parser = sub.add_parser("questionnaire", help="the missing data of one patient as a FHIR Questionnaire",
                            description="Evaluate one patient and write the fields it lacks (missing_data) as a FHIR R4 "
                                        "Questionnaire (SDC style: linkId = the field path, units and answer options "
                                        "from the patient schema). Answer it and pass the QuestionnaireResponse to "
                                        "recommend/explain with --answers.")
    parser.add_argument("patient", metavar="PATIENT", help="patient document (YAML or JSON), or a FHIR Bundle with --fhir")
    parser.add_argument("--fhir", action="store_true", help="PATIENT is a FHIR R4 Bundle (JSON)")
    add_fhir_options(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="write the Questionnaire to FILE instead of stdout")
    add_rules_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fhir.questionnaire import build_questionnaire

    rulebase = gated_rulebase(args.rules, args)
    result = evaluate_argument(rulebase, args)
    text = json.dumps(build_questionnaire(result), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
