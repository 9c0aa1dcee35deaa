"""The impact of a rule-base change on a population: ``radiopal diff OLD NEW --cohort INPUT``.

Both rule bases evaluate the same cohort (any input ``radiopal cohort`` reads — patient files, JSON lines, a FHIR Bulk
Data export — on Dask, through the cohort job itself), and the two decision tables are compared patient by patient:
how many patients' advice changes, by therapy and by status transition (``sr89 contraindicated → eligible: 214``),
with a few example patient ids for each. Text, JSON and an HTML page (a table and an inline SVG chart; no external
request) come from the same report.
"""

from __future__ import annotations

import html
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ImpactReport", "cohort_impact"]

EXAMPLES = 5


@dataclass
class ImpactReport:
    """Who changes between two rule bases over one cohort."""

    old: str
    new: str
    patients: int
    changed_patients: int
    transitions: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)  # (therapy, old, new) -> ids
    errors: int = 0

    def by_therapy(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (therapy, _, _), ids in self.transitions.items():
            counts[therapy] += len(ids)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def rows(self) -> list[tuple[str, str, str, int, list[str]]]:
        """(therapy, old status, new status, patients, example ids), most patients first."""
        rows = [(t, a, b, len(ids), sorted(ids)[:EXAMPLES]) for (t, a, b), ids in self.transitions.items()]
        return sorted(rows, key=lambda r: (-r[3], r[0], r[1], r[2]))

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "patients": self.patients, "changed_patients": self.changed_patients,
                "records_not_evaluated": self.errors, "by_therapy": self.by_therapy(),
                "transitions": [{"therapy": t, "from": a, "to": b, "patients": n, "examples": ex}
                                for t, a, b, n, ex in self.rows()]}

    def to_text(self) -> str:
        lines = [f"radiopal diff {self.old} → {self.new} over a cohort of {self.patients:,} patients",
                 f"patients whose advice changes: {self.changed_patients:,}"
                 + (f" ({self.changed_patients / self.patients:.1%})" if self.patients else ""),
                 f"records not evaluated (errors): {self.errors:,}", ""]
        if not self.transitions:
            lines.append("no decision changes")
        for therapy, old, new, count, examples in self.rows():
            lines.append(f"  {therapy} {old} → {new}: {count:,}   e.g. {', '.join(examples)}")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        rows = self.rows()
        width, bar_h = 640, 18
        top = max((r[3] for r in rows), default=1)
        bars = []
        for i, (therapy, old, new, count, _) in enumerate(rows[:20]):
            w = max(1, round((width - 260) * count / top))
            y = i * (bar_h + 4)
            label = html.escape(f"{therapy}: {old} → {new}")
            bars.append(f'<text x="0" y="{y + 13}" font-size="11">{label}</text>'
                        f'<rect x="250" y="{y}" width="{w}" height="{bar_h}" fill="#0550ae"></rect>'
                        f'<text x="{254 + w}" y="{y + 13}" font-size="11">{count}</text>')
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{max(1, len(bars)) * (bar_h + 4)}" '
               f'role="img" aria-label="patients per transition">{"".join(bars)}</svg>')
        table = "".join(f"<tr><td>{html.escape(t)}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td>"
                        f"<td>{n}</td><td>{html.escape(', '.join(ex))}</td></tr>" for t, a, b, n, ex in rows)
        return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
                "content='width=device-width, initial-scale=1'><title>radiopal rule-base impact</title><style>"
                "body{font:15px/1.4 system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;overflow-wrap:anywhere}"
                "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3rem;"
                "text-align:left}svg{max-width:100%;height:auto}</style></head><body>"
                f"<h1>Impact of a rule-base change</h1><p>{html.escape(self.old)} → {html.escape(self.new)}: "
                f"{self.changed_patients:,} of {self.patients:,} patients get different advice; "
                f"{self.errors:,} records not evaluated.</p>{svg}"
                "<table><thead><tr><th>therapy</th><th>from</th><th>to</th><th>patients</th><th>examples</th></tr>"
                f"</thead><tbody>{table}</tbody></table><p><small>radiopal is decision support for clinicians, "
                "not a prescriber.</small></p></body></html>\n")


def _decisions(folder: Path) -> dict[tuple[str, str], str]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "therapies.parquet", columns=["patient_id", "therapy", "status"]).to_pydict()
    return {(p, t): s for p, t, s in zip(table["patient_id"], table["therapy"], table["status"], strict=True)}


def cohort_impact(old: str | Path, new: str | Path, cohort: str | Path, *, serial: bool = False,
                  workers: int | None = None, evaluation_date: str | None = None,
                  processes: bool = True) -> ImpactReport:
    """Evaluate ``cohort`` with both rule bases (the cohort job, compiled path) and compare the decisions."""
    from .cohort.run import CohortOptions, run_cohort

    with tempfile.TemporaryDirectory(prefix="radiopal-impact-") as tmp:
        outputs = {}
        errors = 0
        for side, rules in (("old", old), ("new", new)):
            out = Path(tmp) / side
            report = run_cohort(CohortOptions(input=Path(cohort), output=out, rules=Path(rules), serial=serial,
                                              workers=workers, evaluation_date=evaluation_date, progress=False,
                                              processes=processes, log=lambda _text: None))
            errors = max(errors, int(getattr(report, "errors", 0) or 0))
            outputs[side] = _decisions(out)
    before, after = outputs["old"], outputs["new"]
    transitions: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    changed: set[str] = set()
    patients = {p for p, _ in before} | {p for p, _ in after}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, "not evaluated"), after.get(key, "not evaluated")
        if a != b:
            transitions[(key[1], a, b)].append(key[0])
            changed.add(key[0])
    return ImpactReport(str(old), str(new), len(patients), len(changed), dict(transitions), errors)


def dumps(report: ImpactReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
