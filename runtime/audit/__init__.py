"""The prediction audit log: one JSON line per explained prediction, hash-chained, append-only.

Each record carries the SHA-256 of the record before it (`prev`) and its own (`hash`, over the record's canonical
JSON without it), so an edited, deleted, reordered or inserted record breaks the chain where it happened. The first
record of a log (`kind: "start"`) names how the chain starts: fresh, continued from a rotated file (its name and
last hash), or begun anew beside a broken log kept aside (`--audit-new`); each later run (or server instance)
that opens the log adds a `session` record. Start and session records name the operator, the device, the
software version and the SBOM's sha256, and each prediction record names the operator and device again.
Records hold hashes, settings and outputs, never pixels; the input's file name only when asked (`log_names`).

Writers take an exclusive lock on `<log>.lock` around reading the chain's last hash, appending one line with a
single write and fsync-ing it, so several processes (the server's model instances) can share a log and a kill
loses at most the record in flight. A line cut short by a kill is moved out of the way, and recorded, by the next
writer, before it appends: no torn line ever sits between two records.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runtime.errors import ConfigError, MnetError

LOG_SCHEMA = "mnet.audit/1"
GENESIS = "0" * 64


class AuditError(MnetError):
    """A log that cannot be written, or that is broken and may not be continued."""


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("melanomanet-edge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(record: dict) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Break:
    """One place where a log's chain does not hold."""

    file: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}"


@dataclass(frozen=True)
class Identity:
    """Who and what writes: the operator and device named at start, and the software."""

    operator: str | None = None
    device_id: str | None = None
    log_names: bool = False
    sbom_sha256: str | None = None
    runtime_version: str = installed_version()


class AuditLog:
    """An append-only, hash-chained JSON Lines log at `path`, rotated to `<stem>.<n>.jsonl` past `max_bytes`.

    Opening checks, before any prediction runs, that the log can be written and that its chain holds: a broken
    log is refused (naming the line) unless `start_new`, which keeps it aside as `<stem>.broken-<time>.jsonl` and
    begins a new chain that names it."""

    def __init__(self, path: str | Path, identity: Identity = Identity(), max_bytes: int | None = None,
                 start_new: bool = False):
        self.path = Path(path)
        self.identity = identity
        self.max_bytes = max_bytes
        if max_bytes is not None and max_bytes < 4096:
            raise ConfigError(f"--audit-max-mb: a log file needs at least 4 KB, got {max_bytes} bytes")
        refuse_non_log(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock_path.touch(exist_ok=True)
            with open(self.path, "ab"):
                pass
        except OSError as error:
            raise ConfigError(f"--audit {self.path}: cannot write the audit log there ({error.strerror}); give a "
                              "path you can write to") from None
        with self._locked():
            self._recover_torn_tail()
            breaks = verify_file(self.path)
            if breaks and not start_new:
                raise AuditError(f"--audit {self.path}: the log is broken at line {breaks[0].line} "
                                 f"({breaks[0].problem}); nothing was appended. Check it with `mnet audit verify "
                                 f"{self.path}`; to keep it aside and start a new chain, add --audit-new")
            if breaks:
                self._set_aside(breaks[0])
            elif self.path.stat().st_size == 0:
                self._append({"kind": "start", "chain": {"begins": "fresh"}})
            else:
                self._append({"kind": "session"})  # another run joins the log: who and what, as at a start

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def supersede(self, moved: dict[str, str]) -> dict:
        """Record that earlier report files (paths relative to the log) were moved aside, not erased, by a
        forced rerun: `verify` then checks their records against the files where they now are."""
        with self._locked():
            self._recover_torn_tail()
            return self._append({"kind": "supersede", "moved": moved, "operator": self.identity.operator,
                                 "device_id": self.identity.device_id})

    def record(self, entry: dict) -> dict:
        """Append one prediction record (`entry`: what runtime.audit.prediction_entry makes); returns it."""
        with self._locked():
            self._recover_torn_tail()
            if self.max_bytes is not None and self.path.stat().st_size >= self.max_bytes:
                self._rotate()
            return self._append({"kind": "prediction", **entry, "operator": self.identity.operator,
                                 "device_id": self.identity.device_id})

    # Everything below runs under the lock.

    def _locked(self):
        return _FileLock(self.lock_path)

    def _append(self, fields: dict, continues: dict | None = None) -> dict:
        """One record after the file's last (or, starting a rotated file, after `continues`, the last record of
        the file it follows), written with one write and fsync-ed."""
        last = continues if continues is not None else last_record(self.path)
        record = {"schema": LOG_SCHEMA, "id": str(uuid.uuid4()), "time": utc_now(),
                  "seq": 0 if last is None else last["seq"] + 1, **fields,
                  "prev": GENESIS if last is None else last["hash"]}
        if record["kind"] in ("start", "session"):
            identity = self.identity
            record.update(operator=identity.operator, device_id=identity.device_id,
                          runtime_version=identity.runtime_version, sbom_sha256=identity.sbom_sha256,
                          log_names=identity.log_names)
        record["hash"] = record_hash(record)
        line = canonical(record) + b"\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(descriptor, line)
            if written != len(line):
                raise AuditError(f"{self.path}: the disk took {written} of {len(line)} bytes of an audit record; "
                                 "free space and rerun")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return record

    def _rotate(self) -> None:
        last = last_record(self.path)
        rotated = next(self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}") for n in range(1, 10**6)
                       if not self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}").exists())
        os.replace(self.path, rotated)
        self.path.touch()
        self._append({"kind": "start", "chain": {"begins": "continued", "file": rotated.name,
                                                 "last_hash": last["hash"], "last_seq": last["seq"]}}, last)

    def _set_aside(self, first: Break) -> None:
        kept = self.path.with_name(f"{self.path.stem}.broken-{time.strftime('%Y%m%dT%H%M%S')}{self.path.suffix}")
        digest = sha256_bytes(self.path.read_bytes())
        os.replace(self.path, kept)
        self.path.touch()
        self._append({"kind": "start", "chain": {"begins": "anew after a broken log", "file": kept.name,
                                                 "sha256": digest, "broken_at_line": first.line,
                                                 "problem": first.problem}})

    def _recover_torn_tail(self) -> None:
        """A final line without its newline is a record a kill cut short: move it to `<log>.torn` and note it.
        A whole record that lacks only its newline (its hash and link hold) is kept and given the newline."""
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            start = _line_start(handle, size)
            handle.seek(start)
            torn = handle.read()
            if _completes_chain(torn, self.path, start):
                handle.write(b"\n")
                handle.flush()
                os.fsync(handle.fileno())
                return
            handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())
        with open(self.path.with_name(self.path.name + ".torn"), "ab") as kept:
            kept.write(torn + b"\n")
        self._append({"kind": "note", "note": f"a record cut short by an interrupted writer ({len(torn)} bytes) "
                                              f"was moved to {self.path.name}.torn"})


def refuse_non_log(path: Path) -> None:
    """Before anything is changed: the log may be new or empty, else its first line must be an audit record;
    neither it nor its lock may be a symbolic link (a link planted in an output folder is not followed)."""
    for candidate in (path, path.with_name(path.name + ".lock")):
        if candidate.is_symlink():
            raise ConfigError(f"--audit {candidate}: is a symbolic link; give the log's own path (links are not "
                              "followed, so that a planted link cannot redirect the log)")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20)
    try:
        schema = json.loads(first).get("schema")
    except (ValueError, AttributeError):
        schema = None
    if schema != LOG_SCHEMA:
        raise ConfigError(f"--audit {path}: is not an audit log (its first line is not an {LOG_SCHEMA} record); "
                          "nothing was changed. Give a new or empty file, or an existing audit log")


def _completes_chain(line: bytes, path: Path, start: int) -> bool:
    """Whether `line`, the last bytes of `path` from `start`, is a whole record that follows the one before."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    if not isinstance(record, dict) or record.get("hash") != record_hash(record):
        return False
    with open(path, "rb") as handle:
        before = None
        if start > 0:
            begin = _line_start(handle, start - 1)
            handle.seek(begin)
            before = json.loads(handle.read(start - 1 - begin))
    return _record_problem(record, before, before is None) is None


def logged_reports(path: Path) -> set[str]:
    """The report sha256s the log at `path` (and its rotated files beside it) holds a record for."""
    found = set()
    for file in [*path.parent.glob(f"{path.stem}.*{path.suffix}"), path]:
        if not file.is_file():
            continue
        for line in read_lines(file):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("report_sha256"):
                found.add(record["report_sha256"])
    return found


class _FileLock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "ab")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *raised):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _line_start(handle, end: int) -> int:
    """Where the last line of a file ending at `end` (without a newline there) begins."""
    position = end
    while position > 0:
        step = min(65536, position)
        handle.seek(position - step)
        chunk = handle.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return position - step + cut + 1
        position -= step
    return 0


def last_record(path: Path) -> dict | None:
    """The last complete record of a log (None for an empty one)."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as handle:
        start = _line_start(handle, size - 1)
        handle.seek(start)
        return json.loads(handle.read())


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def verify_file(path: Path, previous: dict | None = None, check_reports: bool = False) -> list[Break]:
    """Every break in one file's chain: unreadable or torn lines, a record whose hash is not its content's, a
    `prev` that is not the record before's hash, a sequence out of order; with `check_reports`, report files
    (beside the log) whose sha256 is not the recorded one. `previous`: the last record of the file this one
    continues, when known."""
    breaks = []
    lines = read_lines(path)
    if lines and lines[-1] != b"":
        breaks.append(Break(path.name, len(lines), "the file ends inside a record (truncated)"))
    moved_later = _supersessions(lines) if check_reports else []
    before = previous
    for number, line in enumerate(lines[:-1], 1):
        try:
            record = json.loads(line)
        except ValueError:
            breaks.append(Break(path.name, number, "not a JSON record (edited or corrupted)"))
            before = None
            continue
        problem = _record_problem(record, before, number == 1)
        if problem:
            breaks.append(Break(path.name, number, problem))
        if check_reports and record.get("report_file"):
            where = report_location(record, moved_later)
            report = path.parent / where
            if not report.is_file():
                breaks.append(Break(path.name, number, f"its report {where} is missing"))
            elif sha256_bytes(report.read_bytes()) != record.get("report_sha256"):
                breaks.append(Break(path.name, number, f"its report {where} was changed after it was logged"))
        before = record
    return breaks


def _supersessions(lines: list[bytes]) -> list[tuple[int, dict]]:
    """(seq, moved) of each supersede record: where a forced rerun moved earlier report files."""
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") == "supersede" and isinstance(record.get("moved"), dict):
            found.append((record.get("seq", -1), record["moved"]))
    return found


def report_location(record: dict, supersessions: list[tuple[int, dict]]) -> str:
    """Where a record's report is now (relative to the log): moved by the first supersession after it, if any."""
    for seq, moved in supersessions:
        if seq > record.get("seq", -1) and record["report_file"] in moved:
            return moved[record["report_file"]]
    return record["report_file"]


def unlogged_reports(paths: list[Path]) -> list[Break]:
    """Report files (mnet.report JSON) in the folders the log's reports live in, or beside the log, that no
    record names: delivered without their record."""
    named: set[Path] = set()
    folders: set[Path] = set()
    for path in paths:
        if not path.is_file():
            continue
        lines = read_lines(path)
        moves = _supersessions(lines)
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("report_file"):
                named.add((path.parent / report_location(record, moves)).resolve())
                folders.add((path.parent / record["report_file"]).resolve().parent)
        folders.add(path.parent.resolve())
    breaks = []
    for folder in sorted(folders):
        for report in sorted(folder.glob("*.json")):
            if report.resolve() not in named and _is_report(report):
                breaks.append(Break(report.name, 0, f"report {report.name} in {folder} has no audit record "
                                                    "(unlogged)"))
    return breaks


def _is_report(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read(1 << 24)).get("schema", "").startswith("mnet.report/")
    except (OSError, ValueError, AttributeError):
        return False


def _record_problem(record: dict, before: dict | None, first: bool) -> str | None:
    if not isinstance(record, dict) or "hash" not in record or "prev" not in record:
        return "not an audit record"
    if record_hash(record) != record["hash"]:
        return "its content does not match its hash (edited)"
    if first and record.get("kind") != "start":
        return "the file does not begin with a start record (records removed from its head?)"
    if before is None:
        return None if record["prev"] == GENESIS or first else "cannot be checked against the line before"
    if record["prev"] != before.get("hash"):
        return "its prev is not the hash of the record before it (a record deleted, inserted or reordered)"
    if record.get("seq") != before.get("seq", -1) + 1:
        return f"sequence {record.get('seq')} follows {before.get('seq')} (a record deleted or reordered)"
    return None


def verify(paths: list[Path], check_reports: bool = True) -> list[Break]:
    """Walk the chain through `paths` (rotated files and the current one, any order): each file's start record
    must continue the file it names, with that file's last hash."""
    breaks: list[Break] = []
    files = {path.name: path for path in paths}
    for path in paths:
        if not path.is_file():
            breaks.append(Break(path.name, 0, "no such log file"))
            continue
        first = next((line for line in read_lines(path) if line), None)
        previous = None
        try:
            chain = json.loads(first).get("chain", {}) if first else {}
        except ValueError:
            chain = {}
        if chain.get("begins") == "continued":
            named = files.get(chain.get("file"))
            if named is None:
                breaks.append(Break(path.name, 1, f"continues {chain.get('file')}, which was not given"))
            else:
                previous = last_record(named)
                if previous is None or previous.get("hash") != chain.get("last_hash"):
                    breaks.append(Break(path.name, 1, f"continues {chain.get('file')}, whose last record is not "
                                                      "the one it names (records removed from its end?)"))
                    previous = None
        breaks += verify_file(path, previous, check_reports)
    return breaks + (unlogged_reports(paths) if check_reports else [])


def prediction_entry(report_bytes: bytes, manifest, options: dict, report_file: str | None = None,
                     input_sha256: str | None = None, input_name: str | None = None) -> dict:
    """What one prediction's record holds (no pixels): the input's and bundle's hashes, the software, the
    settings, the outputs and the report's sha256 as delivered (the file `mnet run` wrote, the bytes a server
    sent, or the report's canonical JSON from the API)."""
    report = json.loads(report_bytes)
    model = report["model"]
    uncertainty = report["uncertainty"]
    referral = report["referral"]
    entry = {
        "input_sha256": input_sha256, "bundle_sha256": model["sha256"], "bundle_file": model["file"],
        "source_sha256": model["source_sha256"], "manifest_schema": manifest.schema,
        "backend": model["backend"], "precision": model["precision"], "bundle_signed_by": model.get("signed_by"),
        "mc_samples": uncertainty["mc_samples"], "seed": uncertainty["seed"], "options": options,
        "outputs": {
            "probabilities": report["prediction"]["probabilities"], "predicted": report["prediction"]["label"],
            "explained_class": report["gradcampp"]["class"],
            "uncertainty": {key: uncertainty[key] for key in ("predictive", "aleatoric", "epistemic")},
            "review": {"flagged": referral["flagged"], "reason": referral["reason"],
                       "triggers": [trigger["kind"] for trigger in referral.get("triggers", [])],
                       "rule": {key: referral[key] for key in ("score", "threshold", "class_name", "chosen_by")}},
            "abcde_status": (report["abcde"] or {}).get("status"),
        },
        "report_sha256": sha256_bytes(report_bytes), "report_file": report_file,
        "demo_weights": report["demo_weights"],
    }
    if input_name is not None:
        entry["input_name"] = input_name
    return entry
