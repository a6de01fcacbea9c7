"""voffice routing core: account configs, the decision engine and its Redis store.

Everything in this package except `store`, `reader` and `cli` is pure: no I/O, no clocks,
no randomness that is not seeded by the caller. Kamailio (KEMI), `voffice simulate` and the
tests all call the same functions.
"""
