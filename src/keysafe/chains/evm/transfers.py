"""The unsigned transaction of a plain transfer: the chain's coin, or an ERC-20 token.

    >>> transfer_tx(chain_id=8453, to=BOB, units=1_500_000, token=USDC)   # doctest: +SKIP
    {'type': 2, 'chainId': 8453, 'to': USDC, 'value': '0x0', 'data': '0xa9059cbb…'}

The result is the JSON form `tx.parse_transaction` reads, without nonce, gas or fees: the vault
fills those from the chain's RPC exactly as for a transaction an agent sends (rpc.py `fill`),
and the decoders judge the filled transaction (intents.py), never these arguments.
"""

from __future__ import annotations

from typing import Any, Final

from eth_abi.abi import encode as abi_encode

from keysafe.chains.addresses import to_checksum

__all__ = ["ERC20_TRANSFER", "erc20_transfer_data", "transfer_tx"]

ERC20_TRANSFER: Final = bytes.fromhex("a9059cbb")  # transfer(address,uint256)


def erc20_transfer_data(to: str, units: int) -> bytes:
    """Calldata of ERC-20 `transfer(to, units)` (EIP-20)."""
    return ERC20_TRANSFER + abi_encode(["address", "uint256"], [to_checksum(to), units])


def transfer_tx(*, chain_id: int, to: str, units: int, token: str | None) -> dict[str, Any]:
    """An EIP-1559 (type 2) transfer of `units` base units to `to`: of the chain's coin when
    `token` is None, else of the ERC-20 token at `token` (the transaction then calls the token
    and carries no value)."""
    if token is None:
        return {
            "type": 2,
            "chainId": chain_id,
            "to": to_checksum(to),
            "value": hex(units),
            "data": "0x",
        }
    data = erc20_transfer_data(to, units)
    return {
        "type": 2,
        "chainId": chain_id,
        "to": to_checksum(token),
        "value": "0x0",
        "data": "0x" + data.hex(),
    }
