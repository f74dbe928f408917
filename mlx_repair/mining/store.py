"""The SQLite store of one run: every attempt with its verdict, and the pairs mined from them.

Why SQLite in WAL mode with one transaction per attempt: a run can be killed at any
moment (SIGKILL, a closed laptop lid) and re-running the same command must continue
where it stopped. Each attempt is written once, together with its verdict, under a
unique key (task, kind, sample, round); a re-run asks which keys exist and skips them,
and `INSERT OR IGNORE` makes a duplicate impossible even if it asks twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlx_repair.errors import UserError

SCHEMA_VERSION = 5
STORE_FILE = "store.sqlite"
# Store schemas this version opens by adding what they lack: version -> SQL, run before
# SCHEMA (whose statements all create only what is missing). Schema 3 had no log-probs
# and no picks; schema 4 no pair origin and no inventions.
PAIR_ORIGIN = "ALTER TABLE pairs ADD COLUMN origin TEXT NOT NULL DEFAULT 'given';"
MIGRATIONS = {3: "ALTER TABLE attempts ADD COLUMN logprob REAL; " + PAIR_ORIGIN, 4: PAIR_ORIGIN}
PAIR_KINDS = ("repair", "solve", "keep", "garbage")
CONTROL_KINDS = PAIR_KINDS[3:]  # kinds only a control trains on: "train --control garbage"
# Where a pair's answer came from: a passing draft (solve, keep), the model's repair of
# the broken attempt it was shown (self-repair), or an independent sample of the same
# problem (resample).
PROVENANCES = ("draft", "self-repair", "resample")
REPAIR_PROVENANCES = PROVENANCES[1:]  # how a repair pair's fix was made
# Where a pair's problem came from: a problem set the user gave, or the model's own
# invention (`mlx-repair invent`). Apart from provenance, which says how the answer was
# made: an invented problem gives resample and self-repair pairs like any other.
ORIGINS = ("given", "invented")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    problems TEXT NOT NULL,
    config TEXT NOT NULL,
    split TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS problems (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    side TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    round INTEGER NOT NULL,
    parent_id INTEGER REFERENCES attempts(id),
    prompt TEXT NOT NULL,
    completion TEXT NOT NULL,
    code TEXT NOT NULL,
    model TEXT NOT NULL,
    sampling TEXT NOT NULL,
    num_tokens INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    status TEXT NOT NULL,
    feedback TEXT NOT NULL,
    verdict TEXT NOT NULL,
    logprob REAL,
    created REAL NOT NULL,
    UNIQUE (run_id, task_id, kind, sample_index, round)
);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('repair', 'solve', 'keep', 'garbage')),
    broken_id INTEGER REFERENCES attempts(id),
    fixed_id INTEGER NOT NULL REFERENCES attempts(id),
    feedback TEXT NOT NULL,
    near_copy INTEGER NOT NULL,
    provenance TEXT NOT NULL CHECK (provenance IN ('draft', 'self-repair', 'resample')),
    created REAL NOT NULL,
    origin TEXT NOT NULL DEFAULT 'given'
);
-- A solve pair has no broken attempt, and SQL's UNIQUE treats NULLs as distinct: index
-- broken_id as 0 there, so that a resumed run cannot store the same pair twice.
CREATE UNIQUE INDEX IF NOT EXISTS pairs_once ON pairs (run_id, kind, IFNULL(broken_id, 0), fixed_id);
-- The draft (by sample index) each selection strategy picked for a problem
-- (evaluation/selection.py).
CREATE TABLE IF NOT EXISTS picks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    PRIMARY KEY (run_id, task_id, strategy)
);
-- Each request of an invent run (pipeline/invent.py): the level it asked for, the
-- problem the model wrote (JSON; {} when unreadable), kept or the reason it was not, and
-- what the filters measured on the way.
CREATE TABLE IF NOT EXISTS inventions (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    request INTEGER NOT NULL,
    level INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    kept INTEGER NOT NULL,
    reason TEXT NOT NULL,
    problem TEXT NOT NULL,
    output TEXT NOT NULL,
    passing INTEGER,
    solutions INTEGER,
    overlap REAL,
    overlap_with TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, request)
);
"""


@dataclass
class Attempt:
    """One model output, the code taken from it, and what the sandbox said of it."""

    task_id: str
    kind: str  # "draft", "repair" or "resample"
    sample_index: int
    round: int
    prompt: str
    completion: str
    code: str
    model: str
    passed: bool
    status: str
    feedback: str
    num_tokens: int = 0
    sampling: dict = field(default_factory=dict)
    verdict: dict = field(default_factory=dict)
    parent_id: int | None = None
    logprob: float | None = None  # the mean token log-probability, when the writer knows it
    id: int | None = None

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.task_id, self.kind, self.sample_index, self.round)


@dataclass
class Pair:
    """A training pair: the broken attempt (with its feedback) and the answer to learn.
    Without a provenance, solve and keep pairs come from a draft and the others from a
    self-repair, the loop's own repair turn."""

    task_id: str
    kind: str
    fixed_id: int
    feedback: str
    broken_id: int | None = None
    near_copy: bool = False
    provenance: str = ""
    origin: str = "given"  # ORIGINS: the problem's, set by the loop
    id: int | None = None

    def __post_init__(self):
        if not self.provenance:
            self.provenance = "draft" if self.kind in ("solve", "keep") else "self-repair"


@dataclass
class Invention:
    """One request of an invent run and what became of it (`reason` is "" when kept)."""

    request: int
    level: int
    task_id: str
    kept: bool
    reason: str
    problem: dict  # the Problem's fields ({} when the output could not be read)
    output: str  # what the model wrote
    passing: int | None = None  # of `solutions` model solutions, how many passed (None: not solved)
    solutions: int | None = None
    overlap: float | None = None  # the highest n-gram overlap with another problem
    overlap_with: str | None = None


class Store:
    """One run's store file. Open it with `Store.open(run_dir)`; close it (or use `with`)."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.db = connection
        self.path = path
        self.run_id: int | None = None

    @classmethod
    def open(cls, run_dir: str | Path) -> "Store":
        path = Path(run_dir) / STORE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(path, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            store = cls(connection, path)
            store._check_or_create_schema()
        except sqlite3.DatabaseError as error:
            raise UserError(
                f"{path}: not a readable mlx-repair store ({error}); move it away to start afresh"
            ) from None
        return store

    @staticmethod
    def copy(source_dir: str | Path, target_dir: str | Path) -> None:
        """Copy a run directory's store into another (SQLite's backup: consistent even while
        the source is written), through a temporary file: a crash leaves no half copy."""
        target = Path(target_dir) / STORE_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{STORE_FILE}.{os.getpid()}.tmp")
        source, copy = sqlite3.connect(Path(source_dir) / STORE_FILE), sqlite3.connect(temp)
        try:
            source.backup(copy)
        finally:
            source.close()
            copy.close()
        os.replace(temp, target)

    def _check_or_create_schema(self) -> None:
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version in MIGRATIONS:
                self._migrate(version)
            elif version != SCHEMA_VERSION:
                raise UserError(
                    f"{self.path}: written by another mlx-repair version (store schema {version}, "
                    f"this version reads {SCHEMA_VERSION}); use a new run directory"
                )
            self.db.execute("PRAGMA quick_check").fetchone()
            return
        if tables:
            raise UserError(f"{self.path}: holds tables that are not an mlx-repair store")
        with self.db:
            self.db.executescript(SCHEMA)
            self.db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _migrate(self, version: int) -> None:
        """Bring an older store up to this version, when what changed only adds (a column
        that may be empty, a table): its attempts and pairs stay as they are."""
        with self.db:
            self.db.executescript(f"BEGIN; {MIGRATIONS[version]} {SCHEMA} COMMIT;")
            self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start_run(self, name: str, model: str, problems: str, config: dict, split: dict, continues=None) -> int:
        """Create the run, or reopen it when the same name exists with the same settings, or
        with a config that `continues(stored_config, config)` accepts as extending it (the
        run then records the new config)."""
        row = self.db.execute(
            "SELECT id, model, problems, config, split FROM runs WHERE name=?", (name,)
        ).fetchone()
        settings = (model, problems, json.dumps(config, sort_keys=True), json.dumps(split, sort_keys=True))
        if row:
            if tuple(row[1:]) != settings:
                extends = row[1:3] + row[4:] == settings[:2] + settings[3:] and continues is not None
                if not (extends and continues(json.loads(row[3]), config)):
                    raise UserError(
                        f"{self.path}: run {name!r} was started with other settings "
                        f"(model, problems, config or split differ); use a new run directory to change them "
                        f"(raising --rounds is the one change that continues a run)"
                    )
                with self.db:
                    self.db.execute("UPDATE runs SET config=? WHERE id=?", (settings[2], row[0]))
            self.run_id = row[0]
            return self.run_id
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (name, model, problems, config, split, started) VALUES (?, ?, ?, ?, ?, ?)",
                (name, *settings, time.time()),
            )
            self.db.executemany(
                "INSERT INTO problems VALUES (?, ?, ?)",
                [(cursor.lastrowid, t, side) for side in ("train", "eval") for t in split.get(side, [])],
            )
        self.run_id = cursor.lastrowid
        return self.run_id

    def run_names(self) -> list[str]:
        """The runs this store holds ("eval", "mine", ...), oldest first."""
        return [name for (name,) in self.db.execute("SELECT name FROM runs ORDER BY id")]

    def select_run(self, name: str) -> int:
        """Work on an existing run, for reading it back (reports, the TUI, training)."""
        row = self.db.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()
        if row is None:
            raise UserError(f"{self.path}: holds no run named {name!r}")
        self.run_id = row[0]
        return self.run_id

    def _require_run(self) -> int:
        if self.run_id is None:
            raise RuntimeError("start_run() first")
        return self.run_id

    def add_attempt(self, attempt: Attempt) -> Attempt:
        """Write one attempt with its verdict in its own transaction; returns it with its id.
        An attempt under an existing key is not written again: the stored one is returned."""
        run_id = self._require_run()
        row = asdict(attempt)
        row.pop("id")
        row["sampling"] = json.dumps(row["sampling"], sort_keys=True)
        row["verdict"] = json.dumps(row["verdict"], sort_keys=True)
        row["passed"] = int(row["passed"])
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.db:
            self.db.execute(
                f"INSERT OR IGNORE INTO attempts (run_id, created, {columns}) VALUES (?, ?, {marks})",
                (run_id, time.time(), *row.values()),
            )
        return self.attempt_by_key(*attempt.key)

    def attempt_by_key(self, task_id: str, kind: str, sample_index: int, round: int) -> Attempt | None:
        rows = self._attempts(
            "task_id=? AND kind=? AND sample_index=? AND round=?", (task_id, kind, sample_index, round)
        )
        return rows[0] if rows else None

    def attempts(self, task_id: str | None = None) -> list[Attempt]:
        if task_id is None:
            return self._attempts("1", ())
        return self._attempts("task_id=?", (task_id,))

    def _attempts(self, where: str, params: tuple) -> list[Attempt]:
        names = [f for f in Attempt.__dataclass_fields__]
        cursor = self.db.execute(
            f"SELECT {', '.join(names)} FROM attempts WHERE run_id=? AND {where} ORDER BY id",
            (self._require_run(), *params),
        )
        result = []
        for values in cursor:
            record = dict(zip(names, values))
            record["sampling"] = json.loads(record["sampling"])
            record["verdict"] = json.loads(record["verdict"])
            record["passed"] = bool(record["passed"])
            result.append(Attempt(**record))
        return result

    def add_pair(self, pair: Pair) -> bool:
        """Store a pair; False when the same pair was already stored (a resumed run)."""
        if pair.kind not in PAIR_KINDS:
            raise ValueError(f"pair kind must be one of {PAIR_KINDS}, got {pair.kind!r}")
        if pair.provenance not in PROVENANCES:
            raise ValueError(f"pair provenance must be one of {PROVENANCES}, got {pair.provenance!r}")
        if pair.origin not in ORIGINS:
            raise ValueError(f"pair origin must be one of {ORIGINS}, got {pair.origin!r}")
        with self.db:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO pairs (run_id, task_id, kind, broken_id, fixed_id, feedback, "
                "near_copy, provenance, origin, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._require_run(),
                    pair.task_id,
                    pair.kind,
                    pair.broken_id,
                    pair.fixed_id,
                    pair.feedback,
                    int(pair.near_copy),
                    pair.provenance,
                    pair.origin,
                    time.time(),
                ),
            )
        return cursor.rowcount == 1

    def pairs(self, kind: str | None = None) -> list[Pair]:
        query = (
            "SELECT task_id, kind, fixed_id, feedback, broken_id, near_copy, provenance, origin, id "
            "FROM pairs WHERE run_id=?"
        )
        params: tuple = (self._require_run(),)
        if kind is not None:
            query += " AND kind=?"
            params += (kind,)
        return [
            Pair(task_id=t, kind=k, fixed_id=f, feedback=fb, broken_id=b, near_copy=bool(n), provenance=p, origin=o, id=i)
            for t, k, f, fb, b, n, p, o, i in self.db.execute(query + " ORDER BY id", params)
        ]

    def pair_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(PAIR_KINDS, 0)
        for kind, count in self.db.execute(
            "SELECT kind, COUNT(*) FROM pairs WHERE run_id=? GROUP BY kind", (self._require_run(),)
        ):
            counts[kind] = count
        return counts

    def save_picks(self, task_id: str, picks: dict[str, int]) -> None:
        """Record the draft (sample index) each strategy picked for a problem, replacing an
        earlier selection: a re-run selects again from the same drafts."""
        run_id = self._require_run()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO picks (run_id, task_id, strategy, sample_index) VALUES (?, ?, ?, ?)",
                [(run_id, task_id, strategy, sample) for strategy, sample in picks.items()],
            )

    def picks(self) -> dict[str, dict[str, int]]:
        """{task id: {strategy: sample index}} of every problem a selection was stored for."""
        result: dict[str, dict[str, int]] = {}
        for task_id, strategy, sample in self.db.execute(
            "SELECT task_id, strategy, sample_index FROM picks WHERE run_id=? ORDER BY rowid", (self._require_run(),)
        ):
            result.setdefault(task_id, {})[strategy] = sample
        return result

    def add_invention(self, invention: Invention) -> None:
        """Record one request: its output while it waits to be judged, then its outcome,
        which replaces that row."""
        row = asdict(invention)
        row["problem"] = json.dumps(row["problem"], sort_keys=True)
        row["kept"] = int(row["kept"])
        columns = ", ".join(row)
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO inventions (run_id, created, {columns}) VALUES (?, ?, {', '.join('?' for _ in row)})",
                (self._require_run(), time.time(), *row.values()),
            )

    def inventions(self) -> list[Invention]:
        """Every recorded request of the run, in request order."""
        names = list(Invention.__dataclass_fields__)
        cursor = self.db.execute(
            f"SELECT {', '.join(names)} FROM inventions WHERE run_id=? ORDER BY request", (self._require_run(),)
        )
        result = []
        for values in cursor:
            record = dict(zip(names, values))
            record["problem"], record["kept"] = json.loads(record["problem"]), bool(record["kept"])
            result.append(Invention(**record))
        return result
