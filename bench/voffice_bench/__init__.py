"""Benchmarks (`voffice bench ...`): the decision engine (`decide`), the SIP path against a
native Kamailio baseline (`sip`, with the load-tester kit in `kit`), many accounts through the
whole stack (`scale`) and the media server (`media`).

Above the stack, the proxy, the media server, the store and the core; only the CLI imports it.
"""
