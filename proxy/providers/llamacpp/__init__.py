"""`type: llamacpp` — a GGUF model served by llama.cpp's own HTTP server, which the proxy runs as
a child process (README.md, "A local model"). Nothing here imports `xllamacpp` except the child's
launcher, so the proxy itself never loads llama.cpp into its own address space."""
