"""The whole stack as processes on this machine: `local` starts, stops and probes Redis,
rtpengine, the media servers and Kamailio (`voffice up|down|status`); `redis_server` is a
throw-away redis-server for tests and benchmarks.

May import `routing.store` and `routing.core` (it starts the media server and Kamailio as
processes, it does not import them); never the benchmarks or the CLI.
"""
