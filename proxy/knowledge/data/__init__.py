"""Data files of the knowledge package: the builtin MiniLM's tokenizer.json, gzipped (`local_embedder`)."""
