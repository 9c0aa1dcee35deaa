"""A tamper-evident audit log of evaluations (and CDS Hooks feedback), in SQLite or any SQLAlchemy database.

Every record stores what is needed to show, later, what radiopal advised and why: the sha256 of the patient
document (canonical JSON), the rule-base version and hash, the decisions (contract §B output), the reasoning
graph, the time (UTC, ISO 8601) and the caller. Records are append-only and hash-chained::

    row_hash = sha256(prev_hash + canonical JSON of the row without row_hash)

``prev_hash`` is the previous record's ``row_hash`` (64 zeros for the first), and the sequence number is part of
the hashed content, so :meth:`AuditLog.verify` detects an edited, deleted, inserted or reordered record and names
the first bad one. A one-row head table holds the last sequence number and hash, so deleting the newest records is
detected too. The chain is tamper-*evident*, not tamper-proof: someone who can rewrite the whole database can
recompute every hash; copy the head hash (``radiopal audit verify`` prints it) somewhere else to anchor it.

Writes are one transaction each (record, card index and head together, or nothing). Writers are serialised: a
process-wide lock, plus ``BEGIN IMMEDIATE`` on SQLite (so separate processes queue on the database lock) or
``SELECT ... FOR UPDATE`` on the head row elsewhere. On SQLite, triggers refuse UPDATE and DELETE on the records.

Typical use::

    from radiopal.audit import AuditLog
    log = AuditLog("audit.db")                 # a path (SQLite) or a SQLAlchemy URL
    entry = log.record(result, caller="api:my-app")
    log.verify().ok                            # True while nobody edited the file
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, Problem

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from .result import Result

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "VerifyReport",
    "canonical_json",
    "default_audit_db",
    "input_hash",
]

GENESIS_HASH = "0" * 64
#: Columns of a record, in the order they are hashed (row_hash excluded).
HASHED_COLUMNS = (
    "seq", "record_id", "kind", "recorded_at", "caller", "patient_id", "input_hash", "rulebase_version",
    "rulebase_hash", "decisions_json", "graph_json", "context_json", "prev_hash",
)
#: ``evaluation`` (the engine ran), ``feedback`` (CDS Hooks card feedback), ``refusal`` (a hook call refused
#: without evaluating, e.g. FHIR data about another patient than context.patientId: no card was shown).
KINDS = frozenset({"evaluation", "feedback", "refusal"})
_WRITE = "radiopal_audit_write"


#: The PostgreSQL advisory lock key under which the tables are created (any constant of our own).
_CREATE_LOCK = 0x72616469  # "radi"
#: On PostgreSQL, as on SQLite, the records refuse UPDATE and DELETE.
_PG_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION radiopal_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'radiopal audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
FOR EACH ROW EXECUTE FUNCTION radiopal_audit_append_only();
"""


def database_url(target: str) -> str:
    """A SQLAlchemy URL for ``target``: ``postgresql://`` and ``postgres://`` get the psycopg (3) driver, so users
    need not know SQLAlchemy's driver names; any other URL is used as given."""
    for scheme in ("postgresql://", "postgres://"):
        if target.startswith(scheme):
            return "postgresql+psycopg://" + target[len(scheme):]
    return target


def shown_url(url: str) -> str:
    """The URL with its password masked (``***``), for messages and logs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@", 1)[-1] if "@" in url else url


def _one_line(exc: object, url: str) -> str:
    """A driver's error on one line, without the URL's password even if the driver quoted it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = " ".join(str(exc).split())
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    return text.replace(str(password), "***") if password else text


def default_audit_db() -> str:
    """The audit log used when none is named: ``$RADIOPAL_AUDIT_DB``, else ``radiopal-audit.db`` in the working folder."""
    return os.environ.get("RADIOPAL_AUDIT_DB") or "radiopal-audit.db"


def canonical_json(data: Any) -> str:
    """JSON with sorted keys, no whitespace and UTF-8 text: the same data always gives the same string."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def input_hash(document: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a patient document."""
    return "sha256:" + hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def row_hash(row: Mapping[str, Any]) -> str:
    """The hash of one record: sha256 of its ``prev_hash`` followed by the canonical JSON of its hashed columns."""
    content = canonical_json({name: row.get(name) for name in HASHED_COLUMNS})
    return hashlib.sha256((str(row.get("prev_hash")) + content).encode("utf-8")).hexdigest()


def utc_now() -> str:
    """The current time as UTC ISO 8601 with milliseconds (``2025-06-02T09:15:00.123Z``)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    """What :meth:`AuditLog.record` returns: where the new record sits in the chain."""

    record_id: str
    seq: int
    row_hash: str
    recorded_at: str


@dataclass(frozen=True)
class AuditRecord:
    """One stored record, as read back."""

    seq: int
    record_id: str
    kind: str
    recorded_at: str
    caller: str
    patient_id: str | None
    input_hash: str | None
    rulebase_version: str | None
    rulebase_hash: str | None
    decisions: dict[str, Any] | None
    graph: dict[str, Any] | None
    context: dict[str, Any]
    prev_hash: str
    row_hash: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON."""
        return {
            "seq": self.seq, "record_id": self.record_id, "kind": self.kind, "recorded_at": self.recorded_at,
            "caller": self.caller, "patient_id": self.patient_id, "input_hash": self.input_hash,
            "rulebase": {"version": self.rulebase_version, "hash": self.rulebase_hash},
            "decisions": self.decisions, "graph": self.graph, "context": self.context,
            "prev_hash": self.prev_hash, "row_hash": self.row_hash,
        }


@dataclass
class VerifyReport:
    """The outcome of :meth:`AuditLog.verify`. ``first_bad`` is the sequence number of the first bad record."""

    records: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad: int | None = None
    first_bad_id: str | None = None
    head_hash: str = GENESIS_HASH

    @property
    def ok(self) -> bool:
        return not self.problems


def _create_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), whatever the umask: it holds clinical data.

    SQLite gives its -wal and -shm files the database file's permissions, so they are private too. An existing file
    keeps the permissions its owner chose.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise InputError(f"{path}: cannot create the audit log: {exc.strerror}",
                         [Problem(f"cannot create the audit log: {exc.strerror}", file=str(path))]) from exc
    os.close(fd)


class AuditLog:
    """An append-only, hash-chained audit log.

    ``target`` is a file path (SQLite, created on first use) or a SQLAlchemy database URL
    (``postgresql+psycopg://...``). With ``create=False`` a missing SQLite file is an :class:`InputError`
    instead of being created (for read-only commands).
    """

    def __init__(self, target: str | Path, *, create: bool = True) -> None:
        from sqlalchemy import create_engine, event, inspect
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        self.target = str(target)
        self._lock = threading.Lock()
        is_url = "://" in self.target
        if is_url:
            url_text = database_url(self.target)
            self.target = shown_url(url_text)  # never the password, in messages or on screen
        if not is_url:
            path = Path(self.target)
            if not create and not path.is_file():
                raise InputError(f"{path}: no audit log there",
                                 [Problem("no audit log at this path", file=str(path), hint="give --db PATH")])
            if create:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise InputError(f"{path}: cannot create its folder: {exc.strerror}",
                                     [Problem(f"cannot create its folder: {exc.strerror}", file=str(path))]) from exc
                _create_private(path)
            url = f"sqlite:///{path.resolve()}"
        else:
            url = url_text
        options: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {
            "pool_pre_ping": True,  # a server restarted under a running service: reconnect instead of failing
            "connect_args": {"connect_timeout": 10}}
        try:
            engine: Engine = create_engine(url, **options)
        except (ArgumentError, ImportError) as exc:
            hint = "PostgreSQL needs the service extra: pip install 'radiopal[service]'" if isinstance(
                exc, ImportError) else "e.g. postgresql://user@host:5432/radiopal, or a file path for SQLite"
            raise InputError(f"{self.target}: not a usable database URL: {_one_line(exc, url)}",
                             [Problem(f"not a usable database URL: {_one_line(exc, url)}", file=self.target,
                                      hint=hint)]) from exc
        self.engine = engine
        self._url = url  # for masking its password in error messages (the engine holds it anyway)
        self.is_sqlite = engine.dialect.name == "sqlite"
        if self.is_sqlite:
            # pysqlite opens transactions lazily and never with IMMEDIATE; take over so a write transaction holds the
            # database write lock from its first statement (the SQLAlchemy recipe for serialisable SQLite).
            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

        self._tables = _tables()
        try:
            if create:
                self._create()
            elif not inspect(engine).has_table("audit_records"):
                raise InputError(f"{self.target}: not a radiopal audit log",
                                 [Problem("not a radiopal audit log (no audit_records table)", file=self.target)])
        except (SQLAlchemyError, OSError) as exc:
            message = f"cannot open the audit log: {_one_line(getattr(exc, 'orig', None) or exc, url)}"
            raise InputError(f"{self.target}: {message}", [Problem(message, file=self.target)]) from exc

    @contextmanager
    def _database_errors(self, action: str) -> Iterator[None]:
        """A database that fails after the log was opened (server down, connection lost): one clear error naming the
        log, password masked, instead of the driver's multi-line message and a traceback."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except SQLAlchemyError as exc:
            message = f"cannot {action}: {_one_line(getattr(exc, 'orig', None) or exc, self._url)}"
            raise InputError(f"{self.target}: {message}", [Problem(message, file=self.target)]) from exc

    # --- schema -----------------------------------------------------------------------------------------------
    def _create(self) -> None:
        from sqlalchemy import insert, select

        records, head, _cards, _tokens = self._tables
        with self._write() as conn:
            if self.engine.dialect.name == "postgresql":
                # Several service nodes may start at once: one creates the tables, the others wait for it.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CREATE_LOCK})")
            records.metadata.create_all(conn)
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(_PG_APPEND_ONLY)
            if self.is_sqlite:
                for action in ("UPDATE", "DELETE"):
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS audit_records_no_{action.lower()} BEFORE {action} ON "
                        "audit_records BEGIN SELECT RAISE(ABORT, 'radiopal audit log is append-only'); END"
                    )
            if conn.execute(select(head.c.id).where(head.c.id == 1)).first() is None:
                conn.execute(insert(head).values(id=1, seq=0, row_hash=GENESIS_HASH))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, serialised within the process (lock) and across processes (BEGIN IMMEDIATE)."""
        with self._lock, self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    # --- writing ----------------------------------------------------------------------------------------------
    def claim_token_id(self, issuer: str, jti: str, until: float) -> bool:
        """Remember the JWT id ``(issuer, jti)`` until ``until`` (epoch seconds).

        Returns False when it is already remembered and not yet expired: a replay, also when the first use was in
        another process writing to this log. The check and the write are one write transaction.
        """
        from sqlalchemy import delete, insert, select, update
        from sqlalchemy.exc import IntegrityError

        tokens = self._tables[3]
        now = time.time()
        if self.engine.dialect.name == "postgresql":
            return self._claim_postgresql(issuer, jti, until, now)
        key = (tokens.c.issuer == issuer) & (tokens.c.jti == jti)
        try:
            with self._write() as conn:
                row = conn.execute(select(tokens.c.until).where(key)).first()
                if row is not None and row[0] > now:
                    return False
                if row is None:
                    conn.execute(insert(tokens).values(issuer=issuer, jti=jti, until=until))
                else:
                    conn.execute(update(tokens).where(key).values(until=until))
                conn.execute(delete(tokens).where(tokens.c.until < now))
        except IntegrityError:  # another process inserted the same id between our read and write
            return False
        return True

    def _claim_postgresql(self, issuer: str, jti: str, until: float, now: float) -> bool:
        """One statement claims the id: inserted, or an expired entry renewed; a live entry makes it a replay.

        ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` locks the conflicting row and re-checks the condition on its
        newest version, so of several nodes claiming the same id at once exactly one gets a row back, also when an
        expired entry is renewed (reading it first and then updating would let every reader renew it). Expired
        entries are dropped afterwards, in their own transaction.
        """
        from sqlalchemy import delete
        from sqlalchemy.dialects.postgresql import insert

        tokens = self._tables[3]
        fresh = insert(tokens).values(issuer=issuer, jti=jti, until=until)
        claim = fresh.on_conflict_do_update(
            index_elements=[tokens.c.issuer, tokens.c.jti], set_={"until": fresh.excluded.until},
            where=tokens.c.until <= now,
        ).returning(tokens.c.jti)
        with self.engine.begin() as conn:
            claimed = conn.execute(claim).first() is not None
        with self.engine.begin() as conn:
            conn.execute(delete(tokens).where(tokens.c.until < now))
        return claimed

    def record(self, result: Result, *, caller: str, context: Mapping[str, Any] | None = None,
               record_id: str | None = None, cards: Mapping[str, str] | None = None) -> AuditEntry:
        """Append one evaluation: input hash, rule base, decisions and graph of ``result``.

        ``caller`` says who asked (``cli``, ``api:<name>``, ``cds-hooks:<issuer>``); ``context`` is extra plain
        data kept with the record (hook, hookInstance, JWT id ...). ``cards`` maps CDS Hooks card uuids to the
        service id, so feedback on a card can be tied back to this record.
        """
        values = {
            "kind": "evaluation",
            "caller": caller,
            "patient_id": result.patient.patient_id,
            "input_hash": input_hash(result.patient.data),
            "rulebase_version": result.rulebase.version,
            "rulebase_hash": result.rulebase.digest,
            "decisions_json": canonical_json(result.to_dict()),
            "graph_json": canonical_json(result.graph.to_dict()),
            "context_json": canonical_json(dict(context or {})),
        }
        return self._append(values, record_id=record_id, cards=cards)

    def record_event(self, kind: str, *, caller: str, context: Mapping[str, Any],
                     patient_id: str | None = None, record_id: str | None = None) -> AuditEntry:
        """Append a record that is not an evaluation (``feedback``, ``refusal``); ``context`` holds its content."""
        if kind not in KINDS or kind == "evaluation":
            raise ValueError(f"unknown audit record kind {kind!r}")
        values = {"kind": kind, "caller": caller, "patient_id": patient_id, "input_hash": None,
                  "rulebase_version": None, "rulebase_hash": None, "decisions_json": None, "graph_json": None,
                  "context_json": canonical_json(dict(context))}
        return self._append(values, record_id=record_id)

    def _append(self, values: dict[str, Any], *, record_id: str | None,
                cards: Mapping[str, str] | None = None) -> AuditEntry:
        from sqlalchemy import insert, select, update

        records, head, card_index, _tokens = self._tables
        rid = record_id or str(uuid.uuid4())
        with self._database_errors("write to the audit log"), self._write() as conn:
            query = select(head.c.seq, head.c.row_hash).where(head.c.id == 1)
            if not self.is_sqlite:
                query = query.with_for_update()
            last = conn.execute(query).one()
            row = {**values, "seq": int(last.seq) + 1, "record_id": rid, "recorded_at": utc_now(),
                   "prev_hash": last.row_hash}
            row["row_hash"] = row_hash(row)
            conn.execute(insert(records).values(**row))
            for card_uuid, service in (cards or {}).items():
                conn.execute(insert(card_index).values(card_uuid=card_uuid, record_id=rid, service_id=service))
            conn.execute(update(head).where(head.c.id == 1).values(seq=row["seq"], row_hash=row["row_hash"]))
        return AuditEntry(rid, row["seq"], row["row_hash"], row["recorded_at"])

    # --- reading ----------------------------------------------------------------------------------------------
    def get(self, key: str | int) -> AuditRecord | None:
        """One record by its id (uuid) or its sequence number; None when there is none."""
        from sqlalchemy import select

        records = self._tables[0]
        text = str(key)
        where = records.c.seq == int(text) if text.isdigit() else records.c.record_id == text
        with self._database_errors("read the audit log"), self.engine.connect() as conn:
            row = conn.execute(select(records).where(where)).mappings().first()
        return _record(row) if row is not None else None

    def card(self, card_uuid: str) -> tuple[str, str] | None:
        """``(record_id, service_id)`` of the evaluation that produced a CDS Hooks card, or None."""
        from sqlalchemy import select

        cards = self._tables[2]
        with self._database_errors("read the audit log"), self.engine.connect() as conn:
            row = conn.execute(
                select(cards.c.record_id, cards.c.service_id).where(cards.c.card_uuid == card_uuid)
            ).first()
        return (row.record_id, row.service_id) if row is not None else None

    def recent(self, *, limit: int = 50, patient_id: str | None = None, kind: str | None = None) -> list[AuditRecord]:
        """The newest records first (without decisions and graph, which stay None)."""
        from sqlalchemy import select

        records = self._tables[0]
        columns = [c for c in records.c if c.name not in ("decisions_json", "graph_json")]
        query = select(*columns).order_by(records.c.seq.desc()).limit(limit)
        if patient_id is not None:
            query = query.where(records.c.patient_id == patient_id)
        if kind is not None:
            query = query.where(records.c.kind == kind)
        with self._database_errors("read the audit log"), self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def _rows(self, conn: Connection) -> Iterator[Mapping[Any, Any]]:
        from sqlalchemy import select

        records = self._tables[0]
        result = conn.execution_options(yield_per=200).execute(select(records).order_by(records.c.seq))
        yield from result.mappings()

    def verify(self) -> VerifyReport:
        """Walk the chain from the first record; report the first record that does not hold together."""
        from sqlalchemy import select

        head = self._tables[1]
        report = VerifyReport()
        expected_seq, prev = 1, GENESIS_HASH
        with self._database_errors("read the audit log"), self.engine.connect() as conn:
            for row in self._rows(conn):
                seq = int(row["seq"])
                problem = None
                if seq != expected_seq:
                    problem = (f"record {seq} ({row['record_id']}): expected record {expected_seq} here; "
                               f"record(s) {expected_seq}..{seq - 1} were deleted or the records were renumbered")
                elif row["prev_hash"] != prev:
                    problem = (f"record {seq} ({row['record_id']}): prev_hash does not match record {seq - 1}; a "
                               "record before it was deleted, replaced or reordered")
                elif row_hash(row) != row["row_hash"]:
                    problem = f"record {seq} ({row['record_id']}): content does not match its hash; it was edited"
                if problem is not None:
                    report.problems.append(problem)
                    report.first_bad, report.first_bad_id = seq, str(row["record_id"])
                    report.records = seq
                    return report
                report.records += 1
                expected_seq, prev = seq + 1, str(row["row_hash"])
            stored = conn.execute(select(head.c.seq, head.c.row_hash).where(head.c.id == 1)).first()
        report.head_hash = prev
        if stored is None:
            report.problems.append("the head record is missing; the log was tampered with or is not a radiopal log")
        elif int(stored.seq) != report.records or stored.row_hash != prev:
            report.problems.append(
                f"the head says {stored.seq} record(s) ending in {stored.row_hash[:12]}…, the chain has "
                f"{report.records} ending in {prev[:12]}…; the newest record(s) were deleted or the head was edited"
            )
            report.first_bad = report.records + 1
        return report

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()


def _record(row: Mapping[Any, Any]) -> AuditRecord:
    def load(name: str) -> Any:
        text = row.get(name)
        return json.loads(text) if text else None

    return AuditRecord(
        seq=int(row["seq"]), record_id=str(row["record_id"]), kind=str(row["kind"]),
        recorded_at=str(row["recorded_at"]), caller=str(row["caller"]), patient_id=row.get("patient_id"),
        input_hash=row.get("input_hash"), rulebase_version=row.get("rulebase_version"),
        rulebase_hash=row.get("rulebase_hash"), decisions=load("decisions_json"), graph=load("graph_json"),
        context=load("context_json") or {}, prev_hash=str(row["prev_hash"]), row_hash=str(row["row_hash"]),
    )


def _tables() -> tuple[Any, Any, Any, Any]:
    from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

    metadata = MetaData()
    records = Table(
        "audit_records", metadata,
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("record_id", String(36), nullable=False, unique=True),
        Column("kind", String(16), nullable=False),
        Column("recorded_at", String(32), nullable=False),
        Column("caller", Text, nullable=False),
        Column("patient_id", Text),
        Column("input_hash", String(71)),
        Column("rulebase_version", Text),
        Column("rulebase_hash", String(71)),
        Column("decisions_json", Text),
        Column("graph_json", Text),
        Column("context_json", Text, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("row_hash", String(64), nullable=False),
        Index("ix_audit_records_patient", "patient_id"),
    )
    head = Table(
        "audit_head", metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", Integer, nullable=False),
        Column("row_hash", String(64), nullable=False),
    )
    # An index from CDS Hooks card uuids to the evaluation that made them (for feedback); not part of the chain,
    # the chained record's context holds the same uuids.
    cards = Table(
        "audit_cards", metadata,
        Column("card_uuid", String(36), primary_key=True),
        Column("record_id", String(36), nullable=False),
        Column("service_id", Text, nullable=False),
    )
    # JWT ids (jti) already used, until their token expires: replay protection shared by every service process that
    # writes to this log. Not audit data (no chain); expired rows are dropped.
    tokens = Table(
        "audit_jwt_ids", metadata,
        Column("issuer", Text, primary_key=True),
        Column("jti", Text, primary_key=True),
        Column("until", Float, nullable=False),
    )
    return records, head, cards, tokens
