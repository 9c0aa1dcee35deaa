"""The output folder of a cohort run: per-batch parts, the done-ledger, the manifest, and the final tables.

Layout of ``OUT_DIR``::

    run.json                    manifest: input, rule base (version + digest), batch size, options, final counts
    parts/batch-NNNNNNNN.*      per batch: therapies.parquet, patients.parquet, errors.jsonl
    done/batch-NNNNNNNN.json    the done-ledger: written last, once the batch's parts are in place
    therapies.parquet|csv       one row per patient and therapy (consolidated from the parts, in input order)
    patients.parquet|csv        one row per evaluated patient (prior agents, candidates, under-use flags, missing data)
    underuse.csv                the patients of the under-use finding (radionuclide or bone-health agent)
    errors.jsonl                one line per record that could not be evaluated
    summary.html                the self-contained summary page
    decisions/<patient>.json    with --decisions: contract §B output per patient
    graphs/<patient>.json       with --graphs: the reasoning graph per patient

Every file is written to a temporary name in its folder and renamed into place, so a kill never leaves half a file
under a final name. A batch counts as done only when its ledger entry exists; parts without one (a kill between the
two) are ignored and redone by ``--resume``. Batches sit on a fixed grid (batch *i* holds input records
``i*B … i*B+B-1``), so consolidating the done batches in index order gives the same tables whether or not the run was
interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..errors import InputError, Problem
from ..fileio import atomic_target
from .evaluate import PATIENT_COLUMNS, THERAPY_COLUMNS, BatchResult, dumps_error

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FINAL_FILES", "OutputFolder", "atomic_target", "patient_schema", "therapy_schema"]

FINAL_FILES: Final = ("therapies.parquet", "therapies.csv", "patients.parquet", "patients.csv", "underuse.csv",
                      "errors.jsonl", "summary.html")
_STATE_DIRS: Final = ("parts", "done", "decisions", "graphs")
_ROW_GROUP: Final = 100_000


def therapy_schema() -> pa.Schema:
    """Arrow schema of the therapies table."""
    import pyarrow as pa

    types = {"patient_id": pa.string(), "therapy": pa.string(), "status": pa.string(), "earliest_date": pa.date32(),
             "dose_mg": pa.float64(), "reasons": pa.string(), "missing_data": pa.string(), "unverified": pa.bool_(),
             "rulebase_version": pa.string()}
    return pa.schema([(name, types[name]) for name in THERAPY_COLUMNS])


def patient_schema() -> pa.Schema:
    """Arrow schema of the patients table."""
    import pyarrow as pa

    types = {"line": pa.int64(), "evaluation_date": pa.date32(), "radionuclide_underuse": pa.bool_(),
             "bone_health_underuse": pa.bool_()}
    return pa.schema([(name, types.get(name, pa.string())) for name in PATIENT_COLUMNS])


def write_text_atomic(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file and a rename."""
    with atomic_target(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


class OutputFolder:
    """The output folder of one cohort run (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.parts = root / "parts"
        self.done = root / "done"
        self.manifest_path = root / "run.json"

    # -- set-up -------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder for one run (released by the OS even when the process is killed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        with (self.root / ".lock").open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise InputError(f"{self.root}: another radiopal cohort run is using this folder",
                                 [Problem("locked by another run", file=str(self.root))]) from exc
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def prepare(self, manifest: dict[str, Any], *, resume: bool) -> tuple[dict[str, Any], bool]:
        """Create the folder; on ``resume`` check the earlier manifest matches, else clear earlier run files.

        Returns the manifest to use (an earlier one's batch size and evaluation date win on resume) and whether an
        earlier run is being resumed. Raises :class:`InputError` when a resume would mix inputs or rule bases.
        """
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: not a folder", [Problem("exists and is not a folder", file=str(self.root))])
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_temporaries()
        previous = self.read_manifest()
        if previous is None and any((self.root / name).exists() for name in (*_STATE_DIRS, *FINAL_FILES)):
            raise InputError(f"{self.root}: holds cohort-like files but no run.json; not overwriting them",
                             [Problem("not the output folder of a radiopal cohort run", file=str(self.root),
                                      hint="choose an empty or new folder")])
        earlier = previous if resume else None
        if earlier is not None:
            self._check_resumable(earlier, manifest)
            merged = dict(manifest)
            merged["batch_size"] = earlier["batch_size"]
            merged["evaluation_date"] = earlier.get("evaluation_date")
            merged["started"] = earlier.get("started", manifest.get("started"))
            merged["status"] = "running"
            self.write_manifest(merged)
            return merged, True
        for name in _STATE_DIRS:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for name in (*FINAL_FILES, "run.json"):
            (self.root / name).unlink(missing_ok=True)
        self.parts.mkdir()
        self.done.mkdir()
        self.write_manifest(manifest)
        return manifest, False

    def _check_resumable(self, earlier: dict[str, Any], now: dict[str, Any]) -> None:
        problems = []
        for key, what in (("input", "input"), ("input_format", "input format")):
            if earlier.get(key) != now.get(key):
                problems.append(Problem(f"the earlier run read {what} {earlier.get(key)!r}, this one {now.get(key)!r}",
                                        path=key))
        before, after = earlier.get("rulebase", {}).get("digest"), now["rulebase"]["digest"]
        if before != after:
            problems.append(Problem(f"the rule base changed since the earlier run ({before} → {after}); its "
                                    "decisions cannot be mixed with this one's", path="rulebase.digest",
                                    hint="run again without --resume"))
        if problems:
            raise InputError(f"{self.root}: cannot resume: " + "; ".join(p.message for p in problems), problems)
        self.parts.mkdir(exist_ok=True)
        self.done.mkdir(exist_ok=True)

    def remove_temporaries(self) -> None:
        """Remove temporary files a killed run left behind: ``.*.tmp`` in the folder and its state folders, and the
        FHIR grouping index of another process."""
        for folder in (self.root, *(self.root / name for name in _STATE_DIRS)):
            if folder.is_dir():
                for entry in os.scandir(folder):
                    stale_index = entry.name.startswith(".fhir-index-") and entry.name != f".fhir-index-{os.getpid()}.sqlite"
                    if entry.is_file() and entry.name.startswith(".") and (entry.name.endswith(".tmp") or stale_index):
                        Path(entry.path).unlink(missing_ok=True)

    # -- manifest -----------------------------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest of an earlier run, or None."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("tool") == "radiopal cohort" and "batch_size" in data else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``run.json`` atomically."""
        write_text_atomic(self.manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")

    # -- batches ------------------------------------------------------------------------------------------------

    @staticmethod
    def batch_name(index: int) -> str:
        return f"batch-{index:08d}"

    def done_indexes(self) -> set[int]:
        """Indexes of the batches whose ledger entry exists."""
        out = set()
        if self.done.is_dir():
            for entry in os.scandir(self.done):
                name = entry.name
                if name.startswith("batch-") and name.endswith(".json"):
                    with contextlib.suppress(ValueError):
                        out.add(int(name[len("batch-"):-len(".json")]))
        return out

    def ledger_entry(self, index: int) -> dict[str, Any]:
        """The ledger entry of batch ``index`` (its record keys, the digest of their content, counts)."""
        data = json.loads((self.done / f"{self.batch_name(index)}.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def write_batch(self, result: BatchResult, digest: str, content: str = "") -> None:
        """Write one batch: per-patient files, then the parts, then (last) the ledger entry — each atomically.

        ``digest`` is the rule base's; ``content`` the digest of the batch's input records (checked by --resume).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        for sub, name, text in result.files:
            write_text_atomic(self.root / sub / name, text)
        base = self.batch_name(result.index)
        with atomic_target(self.parts / f"{base}.therapies.parquet") as tmp:
            pq.write_table(pa.Table.from_pydict(result.therapies, schema=therapy_schema()), tmp)
        with atomic_target(self.parts / f"{base}.patients.parquet") as tmp:
            pq.write_table(pa.Table.from_pydict(result.patients, schema=patient_schema()), tmp)
        write_text_atomic(self.parts / f"{base}.errors.jsonl", "".join(dumps_error(e) for e in result.errors))
        ledger = {"batch": result.index, "keys": result.keys, "content": content,
                  "patients": len(result.patients["patient_id"]),
                  "errors": len(result.errors), "rulebase_digest": digest, "worker_pid": result.pid,
                  "seconds": round(result.seconds, 3)}
        write_text_atomic(self.done / f"{base}.json", json.dumps(ledger, separators=(",", ":")) + "\n")

    def read_batch(self, index: int) -> tuple[pa.Table, pa.Table, list[dict[str, Any]]]:
        """The therapies table, patients table and errors of a done batch."""
        import pyarrow.parquet as pq

        base = self.parts / self.batch_name(index)
        therapies = pq.read_table(f"{base}.therapies.parquet", schema=therapy_schema())
        patients = pq.read_table(f"{base}.patients.parquet", schema=patient_schema())
        text = Path(f"{base}.errors.jsonl").read_text(encoding="utf-8")
        errors = [json.loads(line) for line in text.splitlines() if line.strip()]
        return therapies, patients, errors

    # -- consolidation ------------------------------------------------------------------------------------------

    def consolidate(self, n_batches: int, on_batch: Any = None) -> dict[str, int]:
        """Write the final tables from batches ``0 … n_batches-1`` (all must be done), streaming batch by batch.

        ``on_batch(therapies, patients, errors)`` is called for each batch in order (the summary listens here).
        Returns row counts.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        missing = sorted(set(range(n_batches)) - self.done_indexes())
        if missing:
            raise InputError(f"{self.root}: {len(missing)} batch(es) not done (first: {missing[0]}); "
                             "run again with --resume")
        t_schema, p_schema = therapy_schema(), patient_schema()
        u_schema = pa.schema([("group", pa.string()), ("patient_id", pa.string()), ("candidates", pa.string()),
                              ("primary_site", pa.string()), ("evaluation_date", pa.date32()),
                              ("prior_radionuclides", pa.string()), ("prior_bone_health_agents", pa.string()),
                              ("source", pa.string()), ("line", pa.int64())])
        csv_options = pacsv.WriteOptions(quoting_style="needed")
        counts = {"therapy_rows": 0, "patients": 0, "errors": 0, "underuse_radionuclide": 0, "underuse_bone_health": 0}
        with contextlib.ExitStack() as stack:
            paths = {name: stack.enter_context(atomic_target(self.root / name)) for name in FINAL_FILES
                     if name != "summary.html"}
            t_parquet = stack.enter_context(pq.ParquetWriter(paths["therapies.parquet"], t_schema))
            p_parquet = stack.enter_context(pq.ParquetWriter(paths["patients.parquet"], p_schema))
            t_csv = stack.enter_context(pacsv.CSVWriter(paths["therapies.csv"], t_schema, write_options=csv_options))
            p_csv = stack.enter_context(pacsv.CSVWriter(paths["patients.csv"], p_schema, write_options=csv_options))
            u_csv = stack.enter_context(pacsv.CSVWriter(paths["underuse.csv"], u_schema, write_options=csv_options))
            errors_out = stack.enter_context(paths["errors.jsonl"].open("w", encoding="utf-8"))
            t_buffer: list[pa.Table] = []
            p_buffer: list[pa.Table] = []

            def flush(force: bool = False) -> None:
                if t_buffer and (force or sum(t.num_rows for t in t_buffer) >= _ROW_GROUP):
                    t_parquet.write_table(pa.concat_tables(t_buffer))
                    t_buffer.clear()
                if p_buffer and (force or sum(t.num_rows for t in p_buffer) >= _ROW_GROUP):
                    p_parquet.write_table(pa.concat_tables(p_buffer))
                    p_buffer.clear()

            for index in range(n_batches):
                therapies, patients, errors = self.read_batch(index)
                t_buffer.append(therapies)
                p_buffer.append(patients)
                t_csv.write_table(therapies)
                p_csv.write_table(patients)
                for group, flag, column in (("radionuclide", "radionuclide_underuse", "candidate_radionuclides"),
                                            ("bone_health_agent", "bone_health_underuse",
                                             "candidate_bone_health_agents")):
                    chosen = patients.filter(pc.fill_null(patients[flag], False))
                    if chosen.num_rows:
                        u_csv.write_table(pa.table({
                            "group": pa.array([group] * chosen.num_rows, pa.string()),
                            "patient_id": chosen["patient_id"], "candidates": chosen[column],
                            "primary_site": chosen["primary_site"], "evaluation_date": chosen["evaluation_date"],
                            "prior_radionuclides": chosen["prior_radionuclides"],
                            "prior_bone_health_agents": chosen["prior_bone_health_agents"],
                            "source": chosen["source"], "line": chosen["line"]}, schema=u_schema))
                    counts[f"underuse_{'radionuclide' if group == 'radionuclide' else 'bone_health'}"] += \
                        chosen.num_rows
                for entry in errors:
                    errors_out.write(dumps_error(entry))
                counts["therapy_rows"] += therapies.num_rows
                counts["patients"] += patients.num_rows
                counts["errors"] += len(errors)
                if on_batch is not None:
                    on_batch(therapies, patients, errors)
                flush()
            flush(force=True)
        return counts
