"""Credentials out of anything recorded or printed: URLs and tracking URIs keep their host, lose their secrets.

`https://user:token@host/path?api_key=...` reads `https://***@host/path?api_key=***`; a database URI's
password goes the same way. Applied wherever a URI a user gave is echoed: errors, results, reports.
"""

from __future__ import annotations

import re

USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
SECRET_PARAMS = re.compile(r"(?P<key>[?&;](?:[^=&\s]*(?:token|key|secret|password|passwd|pwd|signature|sig|auth|"
                           r"credential)[^=&\s]*)=)(?P<value>[^&\s#]+)", re.IGNORECASE)


def redact_uri(text: str) -> str:
    """The text with the user-info of every URL and the values of secret-looking query parameters masked."""
    text = USERINFO.sub(lambda match: f"{match['scheme']}***@", text)
    return SECRET_PARAMS.sub(lambda match: f"{match['key']}***", text)
