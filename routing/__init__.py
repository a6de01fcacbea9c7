"""voffice routing, in layers; each imports only the layers below it (checked by the
import-linter contract in pyproject.toml, run by `make lint` and tests/test_layers.py):

    routing.cli          the `voffice` console and the real test call
    voffice_bench        benchmarks (bench/voffice_bench)
    routing.stack        the stack as processes on this machine
    routing.proxy        Kamailio's KEMI adapter      | voffice_media  the media server
    routing.store        Redis: versioned configs, the per-process reader
    routing.core         pure: configs, numbers, day types, engine, plans, scenario, simulate

routing.proxy and voffice_media are independent of each other: they meet only through the
header contract in routing.core.media_contract.
"""
