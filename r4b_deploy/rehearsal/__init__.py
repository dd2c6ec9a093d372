"""The CPU rehearsal: vLLM's CPU build and a tiny R-4B-architecture model, so the whole pipeline
runs for real on a machine with no GPU (CI, a laptop)."""
