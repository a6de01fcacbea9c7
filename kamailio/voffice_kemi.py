"""Entry point Kamailio's app_python3 loads: put the project and its venv on sys.path,
then hand over to routing.proxy.kemi. Kamailio embeds Debian's /usr/bin/python3, the same
interpreter the project's .venv was made from, so the venv's packages load here."""

import os
import sys

_ROOT = os.environ.get("VOFFICE_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SITE = os.path.join(_ROOT, ".venv", "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
for _path in (_SITE, _ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from routing.proxy.kemi import mod_init  # noqa: E402,F401
