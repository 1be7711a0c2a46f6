"""The embedded backend: one SQLite file, FTS5 for BM25, vectors as float32 blobs beside the text.

One connection, used from one worker thread, so the event loop never blocks on the disk and
sqlite3 is never shared between threads. Several proxy workers may open the same file (WAL
mode; writes are serialised by SQLite's lock); several hosts need the postgres backend.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from proxy.knowledge.records import Chunk, Datasource, KnowledgeBase, Metadata, Page
from proxy.knowledge.store import KEYWORD_CANDIDATES, Candidates, Store, terms

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb (id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kb_rev (kb_id TEXT PRIMARY KEY, rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS datasource (id TEXT PRIMARY KEY, kb_id TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS datasource_kb ON datasource (kb_id);
CREATE TABLE IF NOT EXISTS chunk (
    n INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, kb_id TEXT NOT NULL, ds_id TEXT NOT NULL,
    text TEXT NOT NULL, metadata BLOB NOT NULL, vector BLOB, enabled INTEGER NOT NULL,
    status TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunk_ds ON chunk (ds_id, id);
CREATE INDEX IF NOT EXISTS chunk_kb ON chunk (kb_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(
    text, content='chunk', content_rowid='n', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS chunk_ai AFTER INSERT ON chunk BEGIN
    INSERT INTO chunk_fts(rowid, text) VALUES (new.n, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunk_ad AFTER DELETE ON chunk BEGIN
    INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.n, old.text); END;
CREATE TRIGGER IF NOT EXISTS chunk_au AFTER UPDATE OF text ON chunk BEGIN
    INSERT INTO chunk_fts(chunk_fts, rowid, text) VALUES ('delete', old.n, old.text);
    INSERT INTO chunk_fts(rowid, text) VALUES (new.n, new.text); END;
"""

_BUMP = "INSERT INTO kb_rev VALUES (?, 1) ON CONFLICT (kb_id) DO UPDATE SET rev = rev + 1"
_COLUMNS = "id, kb_id, ds_id, text, metadata, vector, enabled, status, created, updated"
_encode = msgspec.json.encode
_metadata = msgspec.json.Decoder(dict[str, str | float | bool])


def _chunk(row: tuple[Any, ...]) -> Chunk:
    return Chunk(id=row[0], knowledge_id=row[1], datasource_id=row[2], text=row[3],
                 metadata=_metadata.decode(row[4]), vector=row[5], enabled=bool(row[6]), status=row[7],
                 created=row[8], updated=row[9])


def _row(c: Chunk) -> tuple[Any, ...]:
    return (c.id, c.knowledge_id, c.datasource_id, c.text, _encode(c.metadata), c.vector, int(c.enabled),
            c.status, c.created, c.updated)


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="knowledge-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            assert self._db is not None
            with self._db:  # one transaction per job
                return work(self._db)
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    async def open(self) -> None:
        def connect() -> None:
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=OFF")
            db.executescript(_SCHEMA)
            self._db = db
        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
            self._db = None
        self._pool.shutdown(wait=False)

    # -- knowledge bases and datasources -----------------------------------------------------------------
    async def put_base(self, kb: KnowledgeBase) -> None:
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO kb VALUES (?, ?)", (kb.id, _encode(kb))))

    async def bases(self) -> list[KnowledgeBase]:
        rows = await self._run(lambda db: db.execute("SELECT doc FROM kb ORDER BY id").fetchall())
        return [msgspec.json.decode(row[0], type=KnowledgeBase) for row in rows]

    async def delete_base(self, kb_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM chunk WHERE kb_id = ?", (kb_id,))
            db.execute("DELETE FROM datasource WHERE kb_id = ?", (kb_id,))
            db.execute("DELETE FROM kb WHERE id = ?", (kb_id,))
            db.execute(_BUMP, (kb_id,))
        await self._run(work)

    async def put_datasource(self, ds: Datasource) -> None:
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO datasource VALUES (?, ?, ?)",
                                              (ds.id, ds.knowledge_id, _encode(ds))))

    async def datasources(self, kb_id: str) -> list[Datasource]:
        def work(db: sqlite3.Connection) -> list[Datasource]:
            counts = dict(db.execute("SELECT ds_id, count(*) FROM chunk WHERE kb_id = ? GROUP BY ds_id", (kb_id,)))
            rows = db.execute("SELECT id, doc FROM datasource WHERE kb_id = ? ORDER BY id", (kb_id,)).fetchall()
            found = [msgspec.json.decode(doc, type=Datasource) for _, doc in rows]
            for ds in found:
                ds.chunks_count = counts.get(ds.id, 0)
            return found
        return await self._run(work)

    async def delete_datasource(self, ds_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            for (kb_id,) in db.execute("SELECT kb_id FROM datasource WHERE id = ?", (ds_id,)).fetchall():
                db.execute(_BUMP, (kb_id,))
            db.execute("DELETE FROM chunk WHERE ds_id = ?", (ds_id,))
            db.execute("DELETE FROM datasource WHERE id = ?", (ds_id,))
        await self._run(work)

    # -- chunks ---------------------------------------------------------------------------------------------
    async def insert_chunks(self, chunks: list[Chunk]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.executemany(f"INSERT INTO chunk ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [_row(c) for c in chunks])
            db.executemany(_BUMP, [(kb_id,) for kb_id in {c.knowledge_id for c in chunks}])
        await self._run(work)

    async def update_chunk(self, chunk: Chunk) -> None:
        row = _row(chunk)

        def work(db: sqlite3.Connection) -> None:
            db.execute("UPDATE chunk SET text = ?, metadata = ?, vector = ?, enabled = ?, status = ?, updated = ? "
                       "WHERE id = ?", (row[3], row[4], row[5], row[6], row[7], row[9], chunk.id))
            db.execute(_BUMP, (chunk.knowledge_id,))
        await self._run(work)

    async def chunk(self, ds_id: str, chunk_id: str) -> Chunk | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {_COLUMNS} FROM chunk WHERE ds_id = ? AND id = ?", (ds_id, chunk_id)).fetchone())
        return None if row is None else _chunk(row)

    async def chunks(self, ids: list[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_COLUMNS} FROM chunk WHERE id IN ({marks})", ids).fetchall())
        return {row[0]: _chunk(row) for row in rows}

    async def list_chunks(self, ds_id: str, limit: int, after: str | None, before: str | None,
                          q: str | None, statuses: list[str] | None) -> Page:
        where, args = ["ds_id = ?"], [ds_id]
        if after:
            where.append("id > ?")
            args.append(after)
        if before:
            where.append("id < ?")
            args.append(before)
        if q:
            where.append("instr(lower(text), lower(?)) > 0")
            args.append(q)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        # Paging backwards (ending_before) reads newest first, then turns the page around.
        order = "DESC" if before and not after else "ASC"
        sql = f"SELECT {_COLUMNS} FROM chunk WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?"
        rows = await self._run(lambda db: db.execute(sql, (*args, limit + 1)).fetchall())
        items = [_chunk(row) for row in rows[:limit]]
        if order == "DESC":
            items.reverse()
        return Page(items, len(rows) > limit)

    async def delete_chunks(self, ds_id: str, ids: list[str]) -> list[str]:
        marks = ",".join("?" * len(ids))

        def work(db: sqlite3.Connection) -> list[str]:
            found = [r[0] for r in db.execute(f"SELECT id FROM chunk WHERE ds_id = ? AND id IN ({marks})",
                                              (ds_id, *ids))]
            db.execute(f"DELETE FROM chunk WHERE ds_id = ? AND id IN ({marks})", (ds_id, *ids))
            for (kb_id,) in db.execute("SELECT kb_id FROM datasource WHERE id = ?", (ds_id,)).fetchall():
                db.execute(_BUMP, (kb_id,))
            return found
        return await self._run(work)

    # -- search -------------------------------------------------------------------------------------------------
    async def keyword(self, kb_id: str, query: str) -> list[tuple[str, float, Metadata]]:
        words = terms(query)
        if not words:
            return []
        expression = " OR ".join(f'"{w}"' for w in words)  # \w+ words only: nothing to escape
        rows = await self._run(lambda db: db.execute(
            "SELECT c.id, -bm25(chunk_fts), c.metadata FROM chunk_fts JOIN chunk c ON c.n = chunk_fts.rowid "
            "WHERE chunk_fts MATCH ? AND c.kb_id = ? AND c.enabled = 1 ORDER BY bm25(chunk_fts) LIMIT ?",
            (expression, kb_id, KEYWORD_CANDIDATES)).fetchall())
        return [(row[0], float(row[1]), _metadata.decode(row[2])) for row in rows]

    async def revision(self, kb_id: str) -> int:
        row = await self._run(lambda db: db.execute("SELECT rev FROM kb_rev WHERE kb_id = ?", (kb_id,)).fetchone())
        return 0 if row is None else int(row[0])

    async def load_candidates(self, kb_id: str) -> Candidates:
        rows = await self._run(lambda db: db.execute(
            "SELECT id, metadata, vector FROM chunk WHERE kb_id = ? AND enabled = 1 AND vector IS NOT NULL "
            "ORDER BY id", (kb_id,)).fetchall())
        return Candidates.of(rows, _metadata.decode)
