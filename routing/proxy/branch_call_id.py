"""A Call-ID of its own for every operator branch, so a gateway that enforces RFC 3261 8.2.2.2
(merged requests: the same From tag, Call-ID and CSeq on a second INVITE -> 482) takes every
branch of a ringing plan: the members of a wave at once, and re-attempts and later waves while
it still remembers the earlier ones. docs/call-path.md, "Merged requests", has the evidence
that no Kamailio 5.6 module does this.

Branch i of the call's transaction leaves as `<caller's Call-ID>.vo<i>` with `;vob=<i>` on its
Record-Route; replies and the operator's in-dialog requests get the caller's Call-ID back, the
caller's in-dialog requests get the branch's. Media servers keep the caller's Call-ID.
Only a Call-ID that fully matches RFC 3261's `callid` is rewritten (nothing else from a request
goes back into a header); any other is relayed as it came.
"""

from __future__ import annotations

import re

# RFC 3261 25.1: callid = word [ "@" word ]; word = 1*(alphanum / - . ! % * _ + ` ' ~ ( ) < > : \ " / [ ] ? { })
CALL_ID = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?")
BRANCH = re.compile(r"[0-9]{1,4}")
_SUFFIX = re.compile(r"\.vo([0-9]{1,4})\Z")
MAX_LENGTH = 200


def rewritable(call_id: str) -> bool:
    return len(call_id) <= MAX_LENGTH and CALL_ID.fullmatch(call_id) is not None


def for_branch(call_id: str, branch: object) -> str | None:
    """The Call-ID branch `branch` goes out with, or None to leave the request as it is."""
    text = str(branch)
    if not rewritable(call_id) or BRANCH.fullmatch(text) is None:
        return None
    return f"{call_id}.vo{int(text)}"


def of_caller(call_id: str) -> str:
    """The caller's Call-ID of a branch's (a Call-ID with no branch suffix is the caller's)."""
    return _SUFFIX.sub("", call_id, count=1)
