"""A run read back from its store: what `mlx-repair tui RUN_DIR` shows, no model loaded.

The store is replayed as the events the loop would have sent (every attempt, every
pair), then polled, so a run that another process is still writing keeps growing on
screen. Reading is all this does: the store's WAL lets it read while a job writes.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator

from mlx_repair.errors import UserError
from mlx_repair.events import AttemptFinished, Log, PairSaved, Selected, StageStarted
from mlx_repair.mining.store import PAIR_KINDS, STORE_FILE, Store

from mlx_repair.tui.state import Plan

POLL_S = 1.0


def run_names(run_dir: str | Path) -> list[str]:
    """The runs ('mine', 'eval', ...) in a run directory's store, oldest first."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {STORE_FILE} here; give a run directory (runs/<stage>-...)")
    with Store.open(run_dir) as store:
        return [name for (name,) in store.db.execute("SELECT name FROM runs ORDER BY id")]


def read_plan(store: Store) -> Plan:
    """The problems of the run's side (limited as the run was) and its repair rounds,
    from the settings the run was started with."""
    (config_json,) = store.db.execute("SELECT config FROM runs WHERE id=?", (store.run_id,)).fetchone()
    config = json.loads(config_json)
    repair = config.get("repair")  # mine keeps the [repair] section; eval, whether it repaired (one round)
    rounds = repair.get("rounds") if isinstance(repair, dict) else int(bool(repair))
    side = config.get("side")
    if side not in ("train", "eval"):  # 'all' mixes both sides; their file order is not stored
        return Plan(rounds=rounds)
    ids = [t for (t,) in store.db.execute(
        "SELECT task_id FROM problems WHERE run_id=? AND side=? ORDER BY rowid", (store.run_id, side)
    )]
    limit = config.get("run", {}).get("limit")
    return Plan(tuple(ids[:limit] if limit else ids), rounds)


def store_events(run_dir: str | Path, name: str, until: threading.Event) -> Iterator[object]:
    """Every stored attempt, pair and selection as events, then new ones as they land,
    until `until` is set (waiting on it, not sleeping, lets a quitting app end the poll at
    once)."""
    with Store.open(run_dir) as store:
        store.select_run(name)
        plan = read_plan(store)
        yield plan
        yield StageStarted(name, len(plan.task_ids))
        seen_attempts: set[int] = set()
        seen_pairs: set[int] = set()
        seen_picks: dict[str, dict[str, int]] = {}
        counts = dict.fromkeys(PAIR_KINDS, 0)
        yield Log(f"reading run {name!r} of {Path(run_dir).name}/{STORE_FILE}")
        while True:
            for attempt in store.attempts():
                if attempt.id not in seen_attempts:
                    seen_attempts.add(attempt.id)
                    yield AttemptFinished(attempt, resumed=True)
            for pair in store.pairs():
                if pair.id not in seen_pairs:
                    seen_pairs.add(pair.id)
                    counts[pair.kind] += 1
                    yield PairSaved(pair, dict(counts))
            for task_id, picks in store.picks().items():
                if seen_picks.get(task_id) != picks:
                    seen_picks[task_id] = picks
                    yield Selected(task_id, picks)
            if until.wait(POLL_S):
                return
