"""The driver of a cohort run: stream the input in batches, evaluate them serially or on Dask, write, summarise.

The driver never holds more than a bounded number of batches: records are read lazily, at most ``max_in_flight``
batches are out on the cluster at once, and each result is written to its part files as soon as it comes back.
Dask is imported only when a cluster is used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import DISCLAIMER, __version__
from ..errors import InputError, Problem, RadiopalError
from .evaluate import BatchConfig, BatchResult, RuleSnapshot, evaluate_batch, snapshot_rules
from .outputs import OutputFolder, write_text_atomic
from .readers import Reader, Record, open_reader
from .summary import Summary

__all__ = ["CohortError", "CohortOptions", "CohortReport", "run_cohort"]

DEFAULT_BATCH_SIZE = 250
LOW_LEVEL_LOG_LENGTH = 16


class CohortError(RadiopalError):
    """A cohort run could not complete (a task failed on the cluster, the cluster could not be reached ...)."""

    exit_code = 3


@dataclass
class CohortOptions:
    """Everything ``radiopal cohort`` takes (see the CLI for the meaning of each option).

    ``serial`` evaluates in this process without Dask. ``processes=False`` runs a local cluster's workers as threads
    of this process (faster to start; for tests). ``max_in_flight`` bounds the batches out on the cluster at once
    (default: two per worker thread, plus two).
    """

    input: Path
    output: Path
    scheduler: str | None = None
    workers: int | None = None
    serial: bool = False
    processes: bool = True
    resume: bool = False
    decisions: bool = False
    graphs: bool = False
    rules: Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    input_format: str = "auto"
    evaluation_date: str | None = None
    progress: bool = True
    max_in_flight: int | None = None
    log: Callable[[str], None] | None = None
    #: The evaluation path: "compiled" (default for cohorts) re-checked on experta, or "experta" for everything.
    engine: str = "compiled"
    #: Re-check about one record in N of the compiled path on experta (0: off).
    recheck_every: int = 500


@dataclass
class CohortReport:
    """What a run did: counts, timing, where things went, and how often workers compiled the rule base."""

    output: Path
    records: int
    patients: int
    errors: int
    evaluated_batches: int
    skipped_batches: int
    batches: int
    seconds: float
    mode: str
    workers: int
    rulebase_version: str
    rulebase_digest: str
    dashboard: str | None = None
    underuse_radionuclide: int = 0
    underuse_bone_health: int = 0
    compiles: dict[int, int] = field(default_factory=dict)
    engine: str = "compiled"
    rechecked: int = 0

    @property
    def summary_path(self) -> Path:
        return self.output / "summary.html"


def run_cohort(options: CohortOptions) -> CohortReport:
    """Run a cohort audit end to end and return its report. Raises :class:`RadiopalError` subclasses on failure."""
    started = time.perf_counter()
    log = options.log or (lambda text: print(text, file=sys.stderr))
    _check_options(options)
    input_path = options.input.resolve()
    output = options.output.resolve()
    reader = open_reader(input_path, options.input_format, workdir=output,
                         exclude=output if _inside(output, input_path) else None)
    folder = OutputFolder(output)
    with folder.lock(), reader:
        snapshot, rulebase = snapshot_rules(options.rules)
        manifest = {
            "tool": "radiopal cohort", "radiopal_version": __version__, "input": str(input_path),
            "input_format": reader.format, "batch_size": options.batch_size,
            "evaluation_date": _evaluation_date(options, reader),
            "rulebase": {"version": snapshot.version, "digest": snapshot.digest, "folder": snapshot.folder},
            "options": {"decisions": options.decisions or options.graphs, "graphs": options.graphs,
                        "engine": options.engine, "recheck_every": options.recheck_every},
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "status": "running",
        }
        manifest, resumed = folder.prepare(manifest, resume=options.resume)
        batch_size = int(str(manifest["batch_size"]))
        if resumed and batch_size != options.batch_size:
            log(f"radiopal cohort: resuming with the earlier run's batch size {batch_size}")
        config = BatchConfig(decisions=options.decisions or options.graphs, graphs=options.graphs,
                             evaluation_date=_optional_text(manifest.get("evaluation_date")), engine=options.engine,
                             recheck_every=options.recheck_every)
        total = reader.count()
        done = folder.done_indexes() if resumed else set()
        state = _RunState(total=total)
        progress = _progress(total, options.progress)
        try:
            batches = _pending_batches(reader, batch_size, done, folder, state, progress)

            def handle(result: BatchResult) -> None:
                if result.mismatch is not None:
                    raise _mismatch_error(result.mismatch, output)
                state.rechecked += result.rechecked
                folder.write_batch(result, snapshot.digest, state.contents.pop(result.index, ""))
                state.evaluated += 1
                state.compiles[result.pid] = max(state.compiles.get(result.pid, 0), result.compiles)
                progress.update(len(result.keys))

            if options.serial:
                mode, workers, dashboard = "serial", 1, None
                _drive_serial(batches, config, snapshot, handle)
            else:
                mode, workers, dashboard = _drive_dask(batches, config, snapshot, handle, options, log)
        finally:
            progress.close()
        n_batches = -(-state.records // batch_size)
        if state.records != total:
            raise InputError(f"{input_path}: the input changed while it was read ({total} records counted, "
                             f"{state.records} read)")
        deferring = frozenset(rule.id for rule in rulebase.rules if rule.then.status == "deferred")
        summary = Summary(tuple(rulebase.catalogue.therapy_ids), deferring)
        counts = folder.consolidate(n_batches, summary.add_batch)
        seconds = time.perf_counter() - started
        facts = [("input", f"{reader.describe()}"), ("records", f"{state.records:,}"),
                 ("patients evaluated", f"{counts['patients']:,}"), ("records not evaluated (errors)", f"{counts['errors']:,}"),
                 ("rule base", snapshot.version), ("run", f"{mode}, {workers} worker(s), batch size {batch_size}"),
                 ("generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))]
        if manifest.get("evaluation_date"):
            facts.insert(2, ("evaluation date (FHIR)", str(manifest["evaluation_date"])))
        page = summary.render(title="radiopal cohort audit", facts=facts, rulebase_version=snapshot.version,
                              rulebase_digest=snapshot.digest, disclaimer=DISCLAIMER)
        write_text_atomic(output / "summary.html", page)
        manifest.update({
            "status": "complete", "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "counts": {"records": state.records, **counts, "batches": n_batches,
                       "batches_evaluated_this_run": state.evaluated, "batches_skipped_this_run": state.skipped},
            "last_run": {"mode": mode, "workers": workers, "seconds": round(seconds, 2), "engine": options.engine,
                         "rechecked_on_experta": state.rechecked,
                         "rulebase_compiles_per_worker": {str(k): v for k, v in sorted(state.compiles.items())}},
        })
        folder.write_manifest(manifest)
    return CohortReport(output, state.records, counts["patients"], counts["errors"], state.evaluated, state.skipped,
                        n_batches, seconds, mode, workers, snapshot.version, snapshot.digest, dashboard,
                        counts["underuse_radionuclide"], counts["underuse_bone_health"], dict(state.compiles),
                        options.engine, state.rechecked)


# ------------------------------------------------------------------------------------------------ pieces


@dataclass
class _RunState:
    total: int
    records: int = 0
    evaluated: int = 0
    skipped: int = 0
    compiles: dict[int, int] = field(default_factory=dict)
    rechecked: int = 0
    contents: dict[int, str] = field(default_factory=dict)  # content digest of each batch in flight


def _mismatch_error(mismatch: dict[str, Any], output: Path) -> CohortError:
    """Write both results of a re-check that differed to OUT_DIR/engine-mismatch/ and say so (the run stops)."""
    import json

    from .evaluate import safe_name

    folder = output / "engine-mismatch"
    name = safe_name(mismatch.get("patient_id"), str(mismatch.get("key")))
    for side in ("result", "experta"):
        label = mismatch["engine"] if side == "result" else "experta"
        write_text_atomic(folder / f"{name}.{label}.json",
                          json.dumps(mismatch[side], indent=2, ensure_ascii=False, default=str) + "\n")
    where = f"{mismatch.get('source')}" + (f":{mismatch['line']}" if mismatch.get("line") else "")
    return CohortError(f"the {mismatch['engine']} path and experta disagree on record {mismatch['key']} ({where}); "
                       f"run stopped, both results written to {folder}/{name}.*.json — please report this "
                       "(the batches done so far are kept; --engine experta evaluates on the engine of record)")


def _check_options(options: CohortOptions) -> None:
    problems = []
    if options.recheck_every < 0:
        problems.append(Problem(f"must be 0 (off) or more (got {options.recheck_every})", path="--recheck-every"))
    if options.engine not in ("experta", "compiled"):
        problems.append(Problem(f"expected experta or compiled (got {options.engine!r})", path="--engine"))
    if options.batch_size < 1:
        problems.append(Problem(f"must be at least 1 (got {options.batch_size})", path="--batch-size"))
    if options.workers is not None and options.workers < 1:
        problems.append(Problem(f"must be at least 1 (got {options.workers})", path="--workers"))
    if options.serial and options.scheduler:
        problems.append(Problem("--serial and --scheduler exclude each other", path="--serial"))
    if options.evaluation_date is not None:
        try:
            dt.date.fromisoformat(options.evaluation_date)
        except ValueError:
            problems.append(Problem(f"expected YYYY-MM-DD, got {options.evaluation_date!r}", path="--evaluation-date"))
    if problems:
        raise InputError(f"cohort: {len(problems)} bad argument(s)", problems)


def _inside(child: Path, parent: Path) -> bool:
    return parent.is_dir() and (child == parent or parent in child.parents)


def _evaluation_date(options: CohortOptions, reader: Reader) -> str | None:
    """FHIR bulk data has no Bundle timestamp: every interval is counted to one date — the one given, else the
    export's own (the manifest's transactionTime), else today."""
    if reader.format != "fhir":
        return None
    return options.evaluation_date or reader.default_evaluation_date or dt.date.today().isoformat()


def _pending_batches(reader: Reader, batch_size: int, done: set[int], folder: OutputFolder, state: _RunState,
                     progress: Any) -> Iterator[tuple[int, list[Record]]]:
    """Batches on the fixed grid (``ordinal // batch_size``) that still need evaluating; done ones are checked
    against their ledger keys and skipped."""
    def counted(records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            state.records += 1
            yield record

    for index, group in itertools.groupby(counted(reader), key=lambda r: r.ordinal // batch_size):
        records = list(group)
        content = content_digest(records)
        if index in done:
            entry = folder.ledger_entry(index)
            if entry.get("keys") != [r.key for r in records] or entry.get("content") != content:
                raise InputError(f"{folder.root}: cannot resume: batch {index} of the earlier run read other "
                                 "records than the input now gives (the input changed); run again without --resume")
            state.skipped += 1
            progress.update(len(records))
            continue
        state.contents[index] = content
        yield index, records


def content_digest(records: list[Record]) -> str:
    """A digest of a batch's records (keys and bytes): ``--resume`` refuses an input that changed under it."""
    digest = hashlib.blake2b(digest_size=16)
    for record in records:
        for part in (record.key.encode("utf-8"), record.data, (record.error or "").encode("utf-8")):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return "blake2b:" + digest.hexdigest()


def _drive_serial(batches: Iterable[tuple[int, list[Record]]], config: BatchConfig, snapshot: RuleSnapshot,
                  handle: Callable[[BatchResult], None]) -> None:
    for index, records in batches:
        handle(evaluate_batch(index, records, config, snapshot))


def _drive_dask(batches: Iterable[tuple[int, list[Record]]], config: BatchConfig, snapshot: RuleSnapshot,
                handle: Callable[[BatchResult], None], options: CohortOptions,
                log: Callable[[str], None]) -> tuple[str, int, str | None]:
    """Evaluate on a Dask cluster (local, or the one at ``options.scheduler``). Returns (mode, workers, dashboard)."""
    import importlib.util

    import dask
    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        # Distributed keeps its last N low-level messages (default 1,000) for debugging; with batches of patient
        # records inside, that is hundreds of MB in the driver and the workers. A short log keeps memory flat.
        stack.enter_context(dask.config.set({"distributed.admin.low-level-log-length": LOW_LEVEL_LOG_LENGTH}))
        if options.scheduler:
            if options.workers:
                log("radiopal cohort: --workers is ignored with --scheduler (the cluster has its own workers)")
            client = stack.enter_context(Client(options.scheduler, timeout="30s"))
            mode = f"dask at {options.scheduler}"
        else:
            n_workers = options.workers or os.cpu_count() or 1
            # Loopback only: the scheduler, its workers and the dashboard (a free port) listen on no outside
            # interface; a threads cluster talks in-process.
            network = {"host": "127.0.0.1"} if options.processes else {}
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=options.processes,
                dashboard_address="127.0.0.1:0", worker_dashboard_address=None, silence_logs=logging.ERROR,
                **network,
            ))
            client = stack.enter_context(Client(cluster))
            mode = f"dask local ({'processes' if options.processes else 'threads'})"
        workers_info = client.scheduler_info(n_workers=-1).get("workers", {}) \
            if _accepts_n_workers(client) else client.scheduler_info().get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in workers_info.values()) or 1
        dashboard = _dashboard(client)
        note = "" if importlib.util.find_spec("bokeh") is not None or options.scheduler else \
            " (its plots need bokeh>=3.1: pip install bokeh)"
        log(f"radiopal cohort: {mode}, {len(workers_info)} worker(s), {threads} thread(s); "
            f"dashboard: {dashboard or 'not available'}{note if dashboard else ''}")
        limit = options.max_in_flight or (2 * threads + 2)
        snapshot_future = client.scatter(snapshot, broadcast=True, hash=False)
        token = uuid.uuid4().hex[:8]
        pending = as_completed()
        outstanding: set[Any] = set()

        def collect(future: Any) -> None:
            outstanding.discard(future)
            if future.status != "finished":
                error = future.exception()
                raise CohortError(f"a batch failed on the cluster: {type(error).__name__}: {error}; the batches done "
                                  "so far are kept — run again with --resume") from error
            result = future.result()
            future.release()
            handle(result)

        try:
            for index, records in batches:
                future = client.submit(evaluate_batch, index, records, config, snapshot_future, pure=False, retries=1,
                                       key=f"radiopal-batch-{token}-{index}")
                pending.add(future)
                outstanding.add(future)
                while len(outstanding) >= limit:
                    collect(next(pending))
            for future in pending:
                collect(future)
        except BaseException:
            with contextlib.suppress(Exception):
                client.cancel(list(outstanding))
            raise
        return mode, len(workers_info), dashboard


def _accepts_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def _dashboard(client: Any) -> str | None:
    """The cluster's dashboard link, if it has one."""
    try:
        link = client.dashboard_link
    except Exception:
        return None
    return str(link) if link else None


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:  # the cohort extra is optional; a run without a bar is still a run
        return _NoProgress()
    return tqdm(total=total, unit="patient", file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                desc="radiopal cohort")


def _optional_text(value: object) -> str | None:
    """A manifest value that is text or absent (the manifest is JSON the run wrote itself)."""
    return None if value is None else str(value)
