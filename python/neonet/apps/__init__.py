"""Applications on NeoNet (ARCHITECTURE.md, "Layers"): sans-I/O messages + a trio service."""
