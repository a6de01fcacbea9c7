"""voffice media server: a small SIP UAS + RTP endpoint that plays prompts, collects DTMF,
records voicemail and receives fax for the operations Kamailio relays to it.

Protocol code (SIP, SDP, RTP, G.711, DTMF) is sans-IO: bytes in, events out. The asyncio
server owns the sockets and one 20 ms ticker for every stream.
"""
