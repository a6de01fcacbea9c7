"""Redis adapters: `configs` loads, rolls back and describes versioned account configs (the
NOC's side); `reader` is the per-process cache Kamailio workers and media servers read from.

May import `routing.core`; nothing above it.
"""
