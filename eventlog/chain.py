"""The log's hash chain: each row's ``hash`` covers the previous row's hash and every stored
column, so a row changed, removed or inserted behind the store's back breaks the chain at the
next row (:meth:`eventlog.store.EventStore.verify_chain`)."""

from __future__ import annotations

import hashlib

import msgspec

__all__ = ["GENESIS_HASH", "ChainBreak", "chain_hash"]

#: The "previous hash" of the first row.
GENESIS_HASH = "0" * 64


def chain_hash(
    prev_hash: str,
    seq: int,
    ts: str,
    type_: str,
    stream: str,
    actor: str,
    version: int,
    payload: str,
) -> str:
    """The hash of one row: covers the previous row's hash and every stored column."""
    h = hashlib.sha256(prev_hash.encode("ascii"))
    h.update(f"\x1f{seq}\x1f{ts}\x1f{type_}\x1f{stream}\x1f{actor}\x1f{version}\x1f".encode())
    h.update(payload.encode())
    return h.hexdigest()


class ChainBreak(msgspec.Struct, frozen=True):
    """The first row whose stored hash or sequence number does not match the chain."""

    seq: int
    reason: str
