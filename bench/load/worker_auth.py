"""Remote workers and their master prove to each other that they hold the run's token, without sending it.

Locust's master accepts any worker that connects; before this, the first N to say HELLO got the plan, the
request bodies and the headers, and could send forged samples. Now each side answers a fresh challenge of
the other with an HMAC of it under the token (secrets compared in constant time):

    worker -> master  HELLO      {nonce: w}
    master -> worker  CHALLENGE  {nonce: m, proof: HMAC(token, "master|w|m")}   a rogue master cannot make it
    worker -> master  PROOF      {proof: HMAC(token, "worker|m|w")}              a rogue worker cannot either
    master -> worker  PLAN ...   only after a good PROOF; a bad one is refused (ABORT) and named in the cell

The token travels in neither direction, so a captured exchange does not replay (both nonces are fresh). It
authenticates; it does not encrypt: the plan and rows still cross the network in the clear (use an SSH
tunnel or a private network), and headers go to workers only with --share-headers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_ENV = "SERVEBENCH_WORKER_TOKEN"  # where `bench worker` and the run's master read the token
TOKEN_BYTES = 24


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_nonce() -> str:
    return secrets.token_hex(16)


def proof(token: str, role: str, *nonces: str) -> str:
    """What `role` ("master" or "worker") answers to the nonces: an HMAC-SHA256 under the token."""
    return hmac.new(token.encode(), "|".join((role, *nonces)).encode(), hashlib.sha256).hexdigest()


def proves(token: str, claimed: object, role: str, *nonces: str) -> bool:
    return isinstance(claimed, str) and hmac.compare_digest(claimed, proof(token, role, *nonces))
