"""The token check between a run's master and its remote workers (pure logic)."""

from __future__ import annotations

from bench.load.worker_auth import new_nonce, new_token, proof, proves


def test_each_side_proves_the_token_for_these_nonces_only() -> None:
    token, worker_nonce, master_nonce = new_token(), new_nonce(), new_nonce()
    answer = proof(token, "worker", master_nonce, worker_nonce)
    assert proves(token, answer, "worker", master_nonce, worker_nonce)
    assert token not in answer
    assert not proves(new_token(), answer, "worker", master_nonce, worker_nonce)  # another run's token
    assert not proves(token, answer, "worker", new_nonce(), worker_nonce)  # a replay against a fresh challenge
    assert not proves(token, answer, "master", master_nonce, worker_nonce)  # a worker's answer is not a master's
    assert not proves(token, None, "worker", master_nonce, worker_nonce)  # no proof at all


def test_tokens_and_nonces_are_fresh() -> None:
    assert len({new_token() for _ in range(100)}) == 100 and len(new_token()) >= 32
    assert len({new_nonce() for _ in range(100)}) == 100
