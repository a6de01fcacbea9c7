"""The Kamailio adapter: `kemi` (the KEMI routes app_python3 calls) and its pure glue: what a
scenario step means for the proxy (`call_step`), per-branch ring timers (`branch_timer`) and
call records (`call_record`).

May import `routing.store` and `routing.core`; never the media server, the stack or the CLI.
"""
