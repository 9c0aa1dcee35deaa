"""Every rule id of the clinical brief is encoded in rules/ or listed, with a reason, in kb/rule-exclusions.yaml."""

from __future__ import annotations

import re

import pytest
import yaml

import radiopal
from conftest import REPO, SHARED

BRIEF = SHARED / "clinical" / "brief.md"
# A brief rule id: an area, agent parts, and a number (with an optional letter) — or RT-SCC. Advisory ids (ADV-...)
# share some of these shapes and are not rules.
RULE_ID = re.compile(r"(?<![A-Z0-9-])(?:DATA|ELIG|RT|SURG|SEQ|CHEMO|BHA|ANALG|MON|COST)(?:-[A-Z0-9]+)*-(?:\d+[a-z]?|SCC)\b")


def brief_rule_ids() -> set[str]:
    return set(RULE_ID.findall(BRIEF.read_text(encoding="utf-8")))


def exclusions() -> dict[str, dict[str, str]]:
    return yaml.safe_load((REPO / "kb" / "rule-exclusions.yaml").read_text(encoding="utf-8"))["exclusions"]


@pytest.mark.skipif(not BRIEF.exists(), reason="../shared/clinical/brief.md is not beside this checkout (CI has it)")
def test_every_brief_rule_is_encoded_or_excluded_with_a_reason():
    encoded = {rule.id for rule in radiopal.load_rulebase().rules}
    excluded = exclusions()
    missing = sorted(brief_rule_ids() - encoded - set(excluded))
    assert not missing, f"brief rules neither in rules/ nor in kb/rule-exclusions.yaml: {missing}"


def test_every_exclusion_gives_a_reason_and_where_it_is_implemented():
    for rule_id, entry in exclusions().items():
        assert entry.get("reason", "").strip(), rule_id
        assert entry.get("implemented_in", "").strip(), rule_id


def test_no_rule_is_both_encoded_and_excluded():
    encoded = {rule.id for rule in radiopal.load_rulebase().rules}
    assert not encoded & set(exclusions())


@pytest.mark.skipif(not BRIEF.exists(), reason="../shared/clinical/brief.md is not beside this checkout (CI has it)")
def test_the_id_pattern_finds_the_brief_rules_and_not_advisories():
    ids = brief_rule_ids()
    assert {"ELIG-GEN-08b", "RT-SCC", "BHA-01f", "MON-SM-02", "CHEMO-05b"} <= ids
    assert not any(i.startswith(("BHA-CONCURRENT", "MON-SR89")) for i in ids)
