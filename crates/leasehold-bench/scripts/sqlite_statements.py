#!/usr/bin/env python3
"""What SQLite itself spends on leasehold's claim and completion, against the limit's statements.

Runs the statements of a drain directly through SQLite (Python's binding, one connection, no sqlx, no
worker), so the figures hold only SQLite's own work: claims of 100 in BEGIN IMMEDIATE, then their
completion, on a file in WAL mode, for leasehold's schema and statements (read from the repository)
and for the limit's minimal table and statements (crates/leasehold-bench/src/sql/sqlite_limit, as
sqlite_limit.rs runs them). Prints microseconds
per task for each step, medians of three interleaved rounds, with `synchronous = FULL` (as the store
opens files) and `OFF` (the statements without the flush).

    pip install pysqlite3-binary   # SQLite 3.42 or later, for unixepoch('subsec')
    python3 crates/leasehold-bench/scripts/sqlite_statements.py
"""

import glob
import json
import os
import statistics
import tempfile
import time
import uuid

try:
    import pysqlite3 as sqlite3
except ImportError:
    import sqlite3

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SQL = os.path.join(ROOT, "crates", "leasehold-sqlite", "src", "sql")
LIMIT_SQL = os.path.join(ROOT, "crates", "leasehold-bench", "src", "sql", "sqlite_limit")
TASKS = 20_000
BATCH = 100  # the limit claims 100 (claim_hundred.sql)
STEPS = ("claim", "commit of the claim", "completion")

def task_id(i):
    """A task id in the order leasehold's are made (UUIDv7: time first, so ids made later sort later)."""
    ms = int(time.time() * 1000)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (2 << 62) | i))


def read(name, directory=SQL):
    with open(os.path.join(directory, name)) as f:
        return f.read()


def open_file(directory, name, synchronous):
    conn = sqlite3.connect(os.path.join(directory, name), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def limit(conn):
    conn.executescript(read("schema.sql", LIMIT_SQL))
    claim, complete = read("claim_hundred.sql", LIMIT_SQL), read("complete_many.sql", LIMIT_SQL)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO jobs (run_at, payload) VALUES (0, '{\"k\": 1}')", [()] * TASKS)
    conn.execute("COMMIT")
    spent, done = [0.0] * 3, 0
    while done < TASKS:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in conn.execute(claim)]
        t1 = time.perf_counter()
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(complete, [json.dumps(ids)])
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        for i, s in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            spent[i] += s
        done += len(ids)
    return spent


def leasehold(conn):
    for path in sorted(glob.glob(os.path.join(ROOT, "migrations", "sqlite", "*.sql"))):
        with open(path) as f:
            conn.executescript(f.read())
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO leasehold_tasks (id, kind, queue, payload, max_attempts, run_at, created_at) "
        "VALUES (?, 'noop', 'default', '{\"k\": 1}', 25, 0, 0)",
        [(task_id(i),) for i in range(TASKS)],
    )
    conn.execute("COMMIT")
    # as claim.rs writes the picks for one queue; then the update and the answer, as store.rs runs them
    picks = read("task_claim.sql").replace("{available}", read("task_claim_available.sql").replace("{queue}", "'default'"))
    picks = picks.replace("{queues}", "'default'").replace("{limit}", str(BATCH))
    update, answer = read("task_claim_update.sql"), read("task_claim_answer.sql")
    advance, complete = read("fence_advance.sql"), read("task_complete_plain.sql")
    spent, done = [0.0] * 3, 0
    while done < TASKS:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        n, picked = conn.execute(picks).fetchone()
        conn.execute(update, [picked, 30000, "w", "lost"])
        claimed = conn.execute(answer, [picked, 30000]).fetchone()[0]
        t1 = time.perf_counter()
        conn.execute(advance, [n])
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        rows = json.loads(claimed)
        done_now = conn.execute(complete, [json.dumps([f"{r[0]}:{r[1]}" for r in rows])]).fetchall()
        t3 = time.perf_counter()
        assert len(done_now) == len(rows), "a completion missed a task"
        for i, s in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            spent[i] += s
        done += len(rows)
    return spent


def main():
    print(f"SQLite {sqlite3.sqlite_version}; {TASKS} tasks, claims of {BATCH}; us per task, medians of 3 rounds")
    for synchronous in ("FULL", "OFF"):
        rounds = {"limit": [], "leasehold": []}
        for r in range(3):
            order = [("limit", limit), ("leasehold", leasehold)]
            if r % 2:
                order.reverse()
            for name, run in order:
                with tempfile.TemporaryDirectory() as d:
                    conn = open_file(d, f"{name}.sqlite", synchronous)
                    rounds[name].append(run(conn))
                    conn.close()
        print(f"synchronous = {synchronous}")
        print("| step | limit | leasehold | ratio |")
        print("|---|---|---|---|")
        for i, step in enumerate(STEPS):
            a = statistics.median(x[i] for x in rounds["limit"]) / TASKS * 1e6
            b = statistics.median(x[i] for x in rounds["leasehold"]) / TASKS * 1e6
            print(f"| {step} | {a:.1f} | {b:.1f} | {b / a:.1f}x |")
        a = statistics.median(sum(x) for x in rounds["limit"]) / TASKS * 1e6
        b = statistics.median(sum(x) for x in rounds["leasehold"]) / TASKS * 1e6
        print(f"| in all | {a:.1f} | {b:.1f} | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
