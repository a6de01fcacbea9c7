"""The pure core: account configs (validation, compilation), numbers, day types, the decision
engine, ringing plans, scenario stepping, simulation and coverage.

No I/O here: no sockets, no Redis, no subprocesses, no reading of the wall clock except through
`clock.now()` (the one place VOFFICE_NOW is honoured). Kamailio, `voffice simulate`, the media
server and the tests all call these same functions. Imports nothing from the other layers.
"""
