"""The shared backend: PostgreSQL through asyncpg, so several proxy hosts see one set of
knowledge bases (`pip install 'switchyard[postgres]'`).

No pgvector here (Debian's PostgreSQL has none): vectors are float32 `bytea` beside the text and
a vector search reads every embedded chunk of the base and scores it in numpy, as the SQLite
backend does — fine to tens of thousands of chunks per base, then the read itself dominates
(README, "Knowledge bases"). Keyword search is PostgreSQL's full text search (`english`
configuration, a GIN index) ranked with `ts_rank_cd` — not BM25, but the same squash to 0..1.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from proxy.knowledge.records import Chunk, Datasource, KnowledgeBase, Metadata, Page
from proxy.knowledge.store import KEYWORD_CANDIDATES, Candidates, Store, terms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb (id TEXT COLLATE "C" PRIMARY KEY, doc BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS kb_rev (kb_id TEXT PRIMARY KEY, rev BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS datasource (id TEXT COLLATE "C" PRIMARY KEY, kb_id TEXT NOT NULL, doc BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS datasource_kb ON datasource (kb_id);
CREATE TABLE IF NOT EXISTS chunk (
    id TEXT COLLATE "C" PRIMARY KEY, kb_id TEXT NOT NULL, ds_id TEXT NOT NULL, text TEXT NOT NULL,
    metadata BYTEA NOT NULL, vector BYTEA, enabled BOOLEAN NOT NULL, status TEXT NOT NULL,
    created TEXT NOT NULL, updated TEXT NOT NULL,
    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);
CREATE INDEX IF NOT EXISTS chunk_ds ON chunk (ds_id, id);
CREATE INDEX IF NOT EXISTS chunk_kb ON chunk (kb_id);
CREATE INDEX IF NOT EXISTS chunk_tsv ON chunk USING GIN (tsv);
"""

_BUMP = "INSERT INTO kb_rev VALUES ($1, 1) ON CONFLICT (kb_id) DO UPDATE SET rev = kb_rev.rev + 1"
_BUMP_DS = ("INSERT INTO kb_rev SELECT kb_id, 1 FROM datasource WHERE id = $1 "
            "ON CONFLICT (kb_id) DO UPDATE SET rev = kb_rev.rev + 1")
_COLUMNS = "id, kb_id, ds_id, text, metadata, vector, enabled, status, created, updated"
_encode = msgspec.json.encode
_metadata = msgspec.json.Decoder(dict[str, str | float | bool])


def _chunk(row: Any) -> Chunk:
    return Chunk(id=row[0], knowledge_id=row[1], datasource_id=row[2], text=row[3],
                 metadata=_metadata.decode(row[4]), vector=row[5], enabled=row[6], status=row[7],
                 created=row[8], updated=row[9])


def _row(c: Chunk) -> tuple[Any, ...]:
    return (c.id, c.knowledge_id, c.datasource_id, c.text, _encode(c.metadata), c.vector, c.enabled,
            c.status, c.created, c.updated)


class PostgresStore(Store):
    def __init__(self, url: str, schema: str) -> None:
        super().__init__()
        self.url = url
        self.schema = schema  # validated by the config: [a-z_][a-z0-9_]*
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "PostgresStore.open() was not awaited"
        return self._pool

    async def open(self) -> None:
        db = await asyncpg.connect(self.url)
        try:
            async with db.transaction():  # several workers start at once: one creates the tables
                await db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
                await db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await db.execute(f'SET LOCAL search_path TO "{self.schema}"')
                await db.execute(_SCHEMA)
        finally:
            await db.close()
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=8,
                                               server_settings={"search_path": self.schema})

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- knowledge bases and datasources -----------------------------------------------------------------
    async def put_base(self, kb: KnowledgeBase) -> None:
        await self.pool.execute("INSERT INTO kb VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = $2",
                                kb.id, _encode(kb))

    async def bases(self) -> list[KnowledgeBase]:
        rows = await self.pool.fetch("SELECT doc FROM kb ORDER BY id")
        return [msgspec.json.decode(row[0], type=KnowledgeBase) for row in rows]

    async def delete_base(self, kb_id: str) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("DELETE FROM chunk WHERE kb_id = $1", kb_id)
            await db.execute("DELETE FROM datasource WHERE kb_id = $1", kb_id)
            await db.execute("DELETE FROM kb WHERE id = $1", kb_id)
            await db.execute(_BUMP, kb_id)

    async def put_datasource(self, ds: Datasource) -> None:
        await self.pool.execute(
            "INSERT INTO datasource VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET doc = $3",
            ds.id, ds.knowledge_id, _encode(ds))

    async def datasources(self, kb_id: str) -> list[Datasource]:
        counts = dict(await self.pool.fetch(
            "SELECT ds_id, count(*) FROM chunk WHERE kb_id = $1 GROUP BY ds_id", kb_id))
        rows = await self.pool.fetch("SELECT doc FROM datasource WHERE kb_id = $1 ORDER BY id", kb_id)
        found = [msgspec.json.decode(row[0], type=Datasource) for row in rows]
        for ds in found:
            ds.chunks_count = counts.get(ds.id, 0)
        return found

    async def delete_datasource(self, ds_id: str) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(_BUMP_DS, ds_id)
            await db.execute("DELETE FROM chunk WHERE ds_id = $1", ds_id)
            await db.execute("DELETE FROM datasource WHERE id = $1", ds_id)

    # -- chunks ---------------------------------------------------------------------------------------------
    async def insert_chunks(self, chunks: list[Chunk]) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.executemany(
                f"INSERT INTO chunk ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [_row(c) for c in chunks])
            await db.executemany(_BUMP, [(kb_id,) for kb_id in {c.knowledge_id for c in chunks}])

    async def update_chunk(self, chunk: Chunk) -> None:
        row = _row(chunk)
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "UPDATE chunk SET text = $1, metadata = $2, vector = $3, enabled = $4, status = $5, updated = $6 "
                "WHERE id = $7", row[3], row[4], row[5], row[6], row[7], row[9], chunk.id)
            await db.execute(_BUMP, chunk.knowledge_id)

    async def chunk(self, ds_id: str, chunk_id: str) -> Chunk | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM chunk WHERE ds_id = $1 AND id = $2", ds_id, chunk_id)
        return None if row is None else _chunk(row)

    async def chunks(self, ids: list[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM chunk WHERE id = ANY($1::text[])", ids)
        return {row[0]: _chunk(row) for row in rows}

    async def list_chunks(self, ds_id: str, limit: int, after: str | None, before: str | None,
                          q: str | None, statuses: list[str] | None) -> Page:
        where, args = ["ds_id = $1"], [ds_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if after:
            where.append(f"id > {arg(after)}")
        if before:
            where.append(f"id < {arg(before)}")
        if q:
            where.append(f"strpos(lower(text), lower({arg(q)})) > 0")
        if statuses:
            where.append(f"status = ANY({arg(statuses)}::text[])")
        order = "DESC" if before and not after else "ASC"
        sql = f"SELECT {_COLUMNS} FROM chunk WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT {arg(limit + 1)}"
        rows = await self.pool.fetch(sql, *args)
        items = [_chunk(row) for row in rows[:limit]]
        if order == "DESC":
            items.reverse()
        return Page(items, len(rows) > limit)

    async def delete_chunks(self, ds_id: str, ids: list[str]) -> list[str]:
        async with self.pool.acquire() as db, db.transaction():
            rows = await db.fetch("DELETE FROM chunk WHERE ds_id = $1 AND id = ANY($2::text[]) RETURNING id",
                                  ds_id, ids)
            await db.execute(_BUMP_DS, ds_id)
        return [row[0] for row in rows]

    # -- search -------------------------------------------------------------------------------------------------
    async def keyword(self, kb_id: str, query: str) -> list[tuple[str, float, Metadata]]:
        words = terms(query)
        if not words:
            return []
        # Word characters only, each quoted as a lexeme, OR-ed: no query syntax of the client's reaches it.
        expression = " | ".join(f"'{w}'" for w in words)
        rows = await self.pool.fetch(
            "SELECT c.id, ts_rank_cd(c.tsv, q, 1) * 10, c.metadata FROM chunk c, to_tsquery('english', $1) q "
            "WHERE c.kb_id = $2 AND c.enabled AND c.tsv @@ q ORDER BY 2 DESC, c.id LIMIT $3",
            expression, kb_id, KEYWORD_CANDIDATES)
        return [(row[0], float(row[1]), _metadata.decode(row[2])) for row in rows]

    async def revision(self, kb_id: str) -> int:
        rev = await self.pool.fetchval("SELECT rev FROM kb_rev WHERE kb_id = $1", kb_id)
        return 0 if rev is None else int(rev)

    async def load_candidates(self, kb_id: str) -> Candidates:
        rows = await self.pool.fetch(
            "SELECT id, metadata, vector FROM chunk WHERE kb_id = $1 AND enabled AND vector IS NOT NULL ORDER BY id",
            kb_id)
        return Candidates.of([(row[0], row[1], row[2]) for row in rows], _metadata.decode)
