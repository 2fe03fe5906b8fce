"""A bare aiosmtpd server plus one SQLite commit per message: the cost of naive durability.

    python contrib/bench/aiosmtpd_sqlite.py --port 2525 --db DIR/bench.db [--host 127.0.0.1]

Each DATA inserts sender, recipients and body into one table and commits (WAL,
synchronous=FULL, so the commit fsyncs) before the 250 goes out.  The commit runs on the event
loop itself, one message at a time, without group commit: the naive design gomail must beat.
`python aiosmtpd_sqlite.py --count --db FILE` prints how many messages were stored.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from bare_aiosmtpd import serve


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages ("
            " id INTEGER PRIMARY KEY, sender TEXT, rcpts TEXT, body BLOB)"
        )

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd name)
        self.db.execute("BEGIN")
        self.db.execute(
            "INSERT INTO messages (sender, rcpts, body) VALUES (?, ?, ?)",
            (envelope.mail_from, "\n".join(envelope.rcpt_tos), envelope.original_content),
        )
        self.db.execute("COMMIT")
        return "250 2.0.0 OK stored"

    def close(self) -> None:
        self.db.close()


def count(path: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="aiosmtpd + one SQLite commit per message")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--db", required=True)
    parser.add_argument("--count", action="store_true", help="print the stored count and exit")
    args = parser.parse_args()
    if args.count:
        print(count(args.db))
        return
    if args.port is None:
        parser.error("--port is required")
    serve(lambda: SQLiteStore(args.db), args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
