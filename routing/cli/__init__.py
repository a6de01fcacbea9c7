"""The top layer: the `voffice` console (`console`) and the real test call (`call_tool`).

May import every layer below; nothing imports it.
"""
