"""A small Ethereum JSON-RPC client (httpx) to fill, broadcast and follow transactions.

Rules:

- `fill` sets only what is missing (nonce, gas, fees); a value the agent gave is never replaced.
  It first checks that the node serves the transaction's chain id, so a misconfigured RPC URL
  cannot produce a transaction for another chain.
- Every failure is an `RpcError` (a `UserError`): unreachable node, HTTP error, JSON-RPC error,
  or a response of the wrong shape. Messages name the host only: RPC URLs often carry an API
  key in their path or query, so the full URL is never shown.

    rpc = EvmRpc("http://127.0.0.1:8545")
    tx = rpc.fill(parse_transaction(payload, chain_id=31337), sender=wallet_address)
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from statistics import median
from typing import Any, Final

import httpx

from keysafe.chains.evm.tx import EvmTx, with_filled
from keysafe.errors import ChainUnavailableError

__all__ = ["EvmRpc", "Fees", "RpcError"]

logger = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024


class RpcError(ChainUnavailableError):
    """The chain's RPC could not be used: unreachable, erroring, or answering nonsense."""


@dataclass(frozen=True, slots=True)
class Fees:
    """A fee quote for every transaction type, in wei per gas."""

    gas_price: int  # for types 0 and 1
    max_fee_per_gas: int  # type 2: what the sender pays at most per gas
    max_priority_fee_per_gas: int  # type 2: the tip


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or value[:2] != "0x" or len(value) > 66:
        raise RpcError(
            f"the RPC returned a malformed {what}.",
            next_step="check that the configured RPC URL is an Ethereum JSON-RPC endpoint.",
        )
    try:
        return int(value[2:] or "0", 16)
    except ValueError:
        raise RpcError(
            f"the RPC returned a malformed {what}.",
            next_step="check that the configured RPC URL is an Ethereum JSON-RPC endpoint.",
        ) from None


def _hex_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or value[:2] != "0x" or len(value) % 2:
        raise RpcError(f"the RPC returned malformed {what}.", next_step="check the RPC endpoint.")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcError(
            f"the RPC returned malformed {what}.", next_step="check the RPC endpoint."
        ) from None


class EvmRpc:
    """JSON-RPC over HTTP(S) to one node. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self._host = httpx.URL(url).host or "the RPC"
        self._ids = itertools.count(1)
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"EvmRpc(host={self._host!r})"  # never the URL: it may hold an API key

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> EvmRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------

    def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; the `result`, or `RpcError`."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        problem: str | None = None
        try:
            response = self._client.post(self._url, json=body)
        except httpx.TimeoutException:
            problem = "timed out"
        except httpx.HTTPError as exc:
            problem = f"could not be reached ({type(exc).__name__})"
        if problem is not None:
            raise RpcError(
                f"The RPC at {self._host} {problem} during {method}.",
                next_step="check that the node is running and the chain's RPC URL is right, "
                "then retry.",
            )
        if response.status_code != 200:
            raise RpcError(
                f"The RPC at {self._host} answered HTTP {response.status_code} to {method}.",
                next_step="check the chain's RPC URL and any API key or rate limit.",
            )
        if len(response.content) > _MAX_RESPONSE_BYTES:
            raise RpcError(
                f"The RPC at {self._host} sent an oversized answer to {method}.",
                next_step="check the chain's RPC URL.",
            )
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or ("result" not in payload and "error" not in payload):
            raise RpcError(
                f"The RPC at {self._host} did not answer {method} with JSON-RPC.",
                next_step="check that the URL is an Ethereum JSON-RPC endpoint.",
            )
        error = payload.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            text = str(message)[:200] if message else "no message"
            raise RpcError(
                f"The RPC at {self._host} refused {method}: {text} (code {code}).",
                next_step="read the node's message above; fix the transaction or the account, "
                "then retry.",
            )
        return payload["result"]

    # ----------------------------------------------------------------------------------------

    def chain_id(self) -> int:
        """The node's chain id (eth_chainId)."""
        return _quantity(self.request("eth_chainId", []), "chain id")

    def nonce(self, address: str) -> int:
        """The next nonce for `address`, counting its pending transactions."""
        return _quantity(self.request("eth_getTransactionCount", [address, "pending"]), "nonce")

    def balance(self, address: str) -> int:
        """The balance of `address` in wei (eth_getBalance, latest block)."""
        return _quantity(self.request("eth_getBalance", [address, "latest"]), "balance")

    def estimate_gas(self, tx_dict: dict[str, Any]) -> int:
        """eth_estimateGas for a JSON-RPC call object (hex quantities, "0x" data)."""
        return _quantity(self.request("eth_estimateGas", [tx_dict]), "gas estimate")

    def gas_price(self) -> int:
        """The node's gas price in wei (eth_gasPrice)."""
        return _quantity(self.request("eth_gasPrice", []), "gas price")

    def fees(self) -> Fees:
        """Current fees: EIP-1559 from eth_feeHistory when the node has it, else eth_gasPrice.

        maxFeePerGas is twice the next block's base fee plus the tip, so the transaction stays
        includable through six consecutive full blocks (each raises the base fee by 12.5%).
        """
        gas_price = self.gas_price()
        try:
            history = self.request("eth_feeHistory", ["0x5", "latest", [50]])
            base_fees = history["baseFeePerGas"]
            next_base = _quantity(base_fees[-1], "base fee")
        except (RpcError, KeyError, IndexError, TypeError):
            # Pre-London chains and some nodes: one price for everything.
            return Fees(gas_price, gas_price, gas_price)
        try:
            tip = _quantity(self.request("eth_maxPriorityFeePerGas", []), "priority fee")
        except RpcError:
            rewards = [
                _quantity(r[0], "reward")
                for r in history.get("reward") or []
                if isinstance(r, list) and r
            ]
            tip = int(median(rewards)) if rewards else 0
        return Fees(gas_price, 2 * next_base + tip, tip)

    def send_raw(self, raw_hex: str) -> str:
        """Broadcast a signed transaction; its hash."""
        result = self.request("eth_sendRawTransaction", [raw_hex])
        if not isinstance(result, str) or len(_hex_bytes(result, "transaction hash")) != 32:
            raise RpcError(
                f"The RPC at {self._host} returned a malformed transaction hash.",
                next_step="check the RPC endpoint; the transaction may still have been sent.",
            )
        return result

    def receipt(
        self, tx_hash: str, wait_seconds: float = 0, *, poll_seconds: float = 0.25
    ) -> dict[str, Any] | None:
        """The receipt of `tx_hash`, polling up to `wait_seconds`; None if not mined by then."""
        deadline = time.monotonic() + wait_seconds
        while True:
            result = self.request("eth_getTransactionReceipt", [tx_hash])
            if result is not None:
                if not isinstance(result, dict):
                    raise RpcError(
                        f"The RPC at {self._host} returned a malformed receipt.",
                        next_step="check the RPC endpoint.",
                    )
                return result
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))

    def call(self, to: str, data: bytes, *, block: str = "latest") -> bytes:
        """eth_call: the raw return data of a read-only call."""
        result = self.request("eth_call", [{"to": to, "data": "0x" + data.hex()}, block])
        return _hex_bytes(result, "call result")

    def erc20_balance(self, token: str, owner: str) -> int:
        """balanceOf(owner) on an ERC-20 token, in base units."""
        data = bytes.fromhex("70a08231") + bytes(12) + bytes.fromhex(owner[2:])
        out = self.call(token, data)
        if len(out) < 32:
            raise RpcError(
                f"The token {token} did not return a balance.",
                next_step="check that the address is an ERC-20 token on this chain.",
            )
        return int.from_bytes(out[:32], "big")

    # ----------------------------------------------------------------------------------------

    def fill(self, tx: EvmTx, sender: str) -> EvmTx:
        """`tx` with its missing nonce, gas and fees set from the node; present fields are kept.

        Raises:
            RpcError: the node is for another chain, or it fails.
        """
        missing = tx.missing_fields()
        if not missing:
            return tx
        served = self.chain_id()
        if served != tx.chain_id:
            raise RpcError(
                f"The RPC at {self._host} serves chain id {served}, but the transaction is for "
                f"chain id {tx.chain_id}.",
                next_step="fix the chain's RPC URL in the registry.",
            )
        fields: dict[str, int] = {}
        if "nonce" in missing:
            fields["nonce"] = self.nonce(sender)
        if "gasPrice" in missing:
            fields["gas_price"] = self.gas_price()
        if "maxFeePerGas" in missing or "maxPriorityFeePerGas" in missing:
            fees = self.fees()
            fields["max_fee_per_gas"] = fees.max_fee_per_gas
            fields["max_priority_fee_per_gas"] = fees.max_priority_fee_per_gas
        if "gas" in missing:
            call: dict[str, Any] = {
                "from": sender,
                "value": hex(tx.value),
                "data": "0x" + tx.data.hex(),
            }
            if tx.to is not None:
                call["to"] = tx.to
            fields["gas"] = self.estimate_gas(call)
        return with_filled(tx, **fields)
