"""Knowledge store benchmark: ingest 10,000 chunks, then search latency per type per backend.

    python -m benchmarks.knowledge [--chunks 10000] [--dims 384] [--searches 200] [--backend sqlite|postgres]

In process, through KnowledgeService, so it measures the store and the scoring, not HTTP or an
embedding provider: vectors come from a deterministic hashed bag of words (the width of
all-MiniLM-L6-v2, 384) and are supplied with the chunks, as a client with its own embedder would.
The postgres run creates its own database on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import secrets
import statistics
import tempfile
import time

import numpy as np

from proxy.config import parse_config
from proxy.knowledge.records import (
    Chunk,
    Datasource,
    KnowledgeBase,
    Settings,
    new_id,
    now,
)
from proxy.knowledge.scoring import to_blob
from proxy.knowledge.service import KnowledgeService

WORDS = [f"w{i}" for i in range(5000)]
PG = "postgresql://postgres@127.0.0.1:5432"


def vector(text: str, dims: int) -> list[float]:
    out = np.zeros(dims, dtype="<f4")
    for word in text.split():
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        out[int.from_bytes(digest[:4], "little") % dims] += 1.0 if digest[4] & 1 else -1.0
    return (out / (np.linalg.norm(out) or 1.0)).tolist()


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(60))  # ~ a 300-character chunk


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(backend: str, chunks: int, dims: int, searches: int, where: str) -> dict[str, float]:
    store = f"backend: sqlite\n  path: {where}/kb.db" if backend == "sqlite" else \
        f"backend: postgres\n  url: {where}"
    config = parse_config(f"providers: {{e: {{type: openai, base_url: 'http://127.0.0.1:9/v1'}}}}\n"
                          f"auth: {{keys: [{{name: bench, key: {secrets.token_hex(16)}}}]}}\n"
                          f"knowledge:\n  {store}\n")
    service = KnowledgeService(config)
    await service.start()

    async def embed(kb: KnowledgeBase, texts: list[str], param: str | None = None) -> list[list[float]]:
        return [vector(t, dims) for t in texts]

    service.embed = embed  # type: ignore[method-assign]  # no provider: the benchmark's own embedder
    rng = random.Random(7)
    stamp = now()
    kb = KnowledgeBase(id=new_id("kb"), key="bench", owner="bench", embedding_model="e/bench",
                       settings=Settings(), created=stamp, updated=stamp)
    ds = Datasource(id=new_id("ds"), knowledge_id=kb.id, display_name="bench", created=stamp, updated=stamp)
    await service.store.put_base(kb)
    await service.store.put_datasource(ds)
    texts = [text(rng) for _ in range(chunks)]
    started = time.perf_counter()
    for start in range(0, chunks, 100):  # the API's batch size
        batch = texts[start:start + 100]
        await service.store.insert_chunks([
            Chunk(id=new_id("ch"), knowledge_id=kb.id, datasource_id=ds.id, text=t,
                  metadata={"n": float(start + i), "even": (start + i) % 2 == 0},
                  vector=to_blob(vector(t, dims)), created=stamp, updated=stamp)
            for i, t in enumerate(batch)])
    figures = {"ingest_s": time.perf_counter() - started}
    queries = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(searches)]
    for kind in ("keyword_search", "vector_search", "hybrid_search"):
        times = []
        for q in queries:
            t0 = time.perf_counter()
            await service.search(kb, q, top_k=5, search_type=kind)
            times.append((time.perf_counter() - t0) * 1000)
        figures[f"{kind}_p50_ms"] = statistics.median(times)
        figures[f"{kind}_p99_ms"] = percentile(times, 0.99)
    await service.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    for backend in args.backend or ["sqlite", "postgres"]:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                figures = await run(backend, args.chunks, args.dims, args.searches, tmp)
        else:
            import asyncpg

            name = f"switchyard_kb_bench_{secrets.token_hex(4)}"
            admin = await asyncpg.connect(f"{PG}/postgres")
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                figures = await run(backend, args.chunks, args.dims, args.searches, f"{PG}/{name}")
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
        print(f"{backend}: {args.chunks} chunks × {args.dims} dims, ingest {figures['ingest_s']:.1f} s "
              f"({args.chunks / figures['ingest_s']:.0f} chunks/s)")
        for kind in ("keyword_search", "vector_search", "hybrid_search"):
            print(f"  {kind:15s} p50 {figures[f'{kind}_p50_ms']:7.2f} ms   p99 {figures[f'{kind}_p99_ms']:7.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
