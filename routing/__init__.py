"""voffice routing, in layers; each imports only the layers below it (checked by the
import-linter contract in pyproject.toml, run by `make lint` and tests/test_layers.py):

    routing.cli          the `voffice` console and the real test call
    voffice_bench        benchmarks (bench/voffice_bench)
    routing.stack        the stack as processes on this machine
    routing.proxy        Kamailio's KEMI adapter      | voffice_media  the media server
                         | routing.records  call history (PostgreSQL), notifications (mail, webhooks)
    routing.store        Redis: versioned configs, the per-process reader
    routing.core         pure: configs, numbers, day types, engine, plans, scenario, simulate

routing.proxy, voffice_media and routing.records are independent of each other: the first two
meet only through the header contract in routing.core.media_contract, and routing.records reads
what both write to the `voffice:events` stream.
"""
