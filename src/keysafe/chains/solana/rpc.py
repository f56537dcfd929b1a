"""A small Solana JSON-RPC client on httpx: broadcast, latest blockhash, balance, account owner.

    >>> with SolanaRpc("http://127.0.0.1:8899") as rpc:       # doctest: +SKIP
    ...     signature = rpc.send_transaction(signed.base64)

Rules:

* Requests are JSON-RPC 2.0 over HTTP POST; an answer must carry the request's `id` and either a
  `result` of the documented shape or an `error`, or it is refused as a bad answer.
* `sendTransaction` sends `[base64, {"encoding": "base64", …}]`. keysafe only broadcasts a
  transaction the fee payer has signed, and the signature the node returns must be that fee-payer
  signature (the transaction id); anything else means the node is not answering for our bytes.
* The RPC URL may carry an API key (`?api-key=…`, a path token, user:password), so errors and
  reprs name only scheme, host and port.
* The node refusing a transaction is the caller's `TransactionRejectedError` (with the node's
  message and code); an unreachable or misbehaving node is a `SolanaRpcError`.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature

from keysafe.chains.solana.tx import parse_transaction
from keysafe.errors import ErrorCode, KeysafeError, MalformedRequestError

__all__ = [
    "GENESIS",
    "Commitment",
    "LatestBlockhash",
    "SolanaRpc",
    "SolanaRpcError",
    "TransactionRejectedError",
]

logger = logging.getLogger(__name__)

Commitment = Literal["processed", "confirmed", "finalized"]

# The genesis hash of each public cluster, by the name keysafe's registry gives it.
GENESIS: Final[dict[str, str]] = {
    "solana": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",  # mainnet-beta
    "solana-devnet": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
}

_MAX_ERROR_TEXT: Final = 300
_MAX_LOG_LINES: Final = 5


class SolanaRpcError(KeysafeError):
    """The Solana node could not be reached or gave an answer that is not valid JSON-RPC."""

    code = ErrorCode.CHAIN_UNAVAILABLE


class TransactionRejectedError(MalformedRequestError):
    """The node answered sendTransaction with an error: the transaction did not go out."""


@dataclass(frozen=True, slots=True)
class LatestBlockhash:
    """A recent blockhash and the last block height at which it is still valid."""

    blockhash: str
    last_valid_block_height: int


def _where(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _is_hash(text: str) -> bool:
    try:
        Hash.from_string(text)
    except Exception:  # solders' ParseHashError is not a ValueError
        return False
    return True


def _clip(text: object) -> str:
    s = "".join(c if c.isprintable() else " " for c in str(text))
    return s if len(s) <= _MAX_ERROR_TEXT else s[: _MAX_ERROR_TEXT - 1] + "…"


class SolanaRpc:
    """JSON-RPC client for one Solana node. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise MalformedRequestError(
                "The Solana RPC URL is not an http(s) URL.",
                next_step="configure the chain's rpc as e.g. http://127.0.0.1:8899.",
            )
        self._url = parsed
        self._where = _where(parsed)
        self._ids = itertools.count(1)
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def __repr__(self) -> str:
        return f"SolanaRpc({self._where})"

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> SolanaRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _unavailable(self, what: str) -> SolanaRpcError:
        return SolanaRpcError(
            f"The Solana node at {self._where} {what}.",
            next_step="check that the node is running and the chain's rpc URL is right, "
            "then retry.",
            rpc=self._where,
        )

    def _call(self, method: str, params: list[Any]) -> tuple[Any, dict[str, Any] | None]:
        """POST one request; (result, None) on success, (None, error object) on an RPC error."""
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        failure: str | None = None
        response: httpx.Response | None = None
        try:
            response = self._client.post(self._url, json=body)
        except httpx.TimeoutException:
            failure = "did not answer in time"
        except httpx.HTTPError:
            failure = "could not be reached"
        if response is None:
            raise self._unavailable(failure or "could not be reached")
        if response.status_code == 429:
            raise self._unavailable("is rate limiting requests (HTTP 429)")
        payload: Any = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("jsonrpc") != "2.0":
            raise self._unavailable(
                f"did not answer {method} with JSON-RPC (HTTP {response.status_code})"
            )
        if payload.get("id") != request_id:
            raise self._unavailable(f"answered {method} for another request id")
        error = payload.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise self._unavailable(f"answered {method} with a malformed error")
            return None, error
        if "result" not in payload:
            raise self._unavailable(f"answered {method} with neither result nor error")
        return payload["result"], None

    def _result(self, method: str, params: list[Any]) -> Any:
        result, error = self._call(method, params)
        if error is not None:
            raise self._unavailable(
                f"refused {method}: {_clip(error.get('message', 'no message'))} "
                f"(code {_clip(error.get('code'))})"
            )
        return result

    # -- methods ------------------------------------------------------------------------------

    def send_transaction(
        self,
        b64: str,
        *,
        skip_preflight: bool | None = None,
        preflight_commitment: Commitment | None = None,
        max_retries: int | None = None,
    ) -> str:
        """Broadcast a signed transaction; its id (the fee payer's signature, base58).

        Raises:
            MalformedRequestError: `b64` is not a transaction, or the fee payer has not signed.
            TransactionRejectedError: the node refused it (simulation failed, expired, …).
            SolanaRpcError: the node is unreachable or answered something else.
        """
        tx = parse_transaction(b64)
        first = tx.signatures[0]
        if first == Signature.default():
            raise MalformedRequestError(
                f"The fee payer {tx.fee_payer} has not signed this transaction, so no node "
                "would accept it; it was not sent.",
                next_step="have the fee payer sign it, then send it.",
            )
        config: dict[str, Any] = {"encoding": "base64"}
        if skip_preflight is not None:
            config["skipPreflight"] = skip_preflight
        if preflight_commitment is not None:
            config["preflightCommitment"] = preflight_commitment
        if max_retries is not None:
            config["maxRetries"] = max_retries
        result, error = self._call("sendTransaction", [tx.base64, config])
        if error is not None:
            message = _clip(error.get("message", "no message"))
            data = error.get("data")
            logs = data.get("logs") if isinstance(data, dict) else None
            if isinstance(logs, list) and logs:
                message += " Logs: " + " | ".join(_clip(x) for x in logs[:_MAX_LOG_LINES])
            code = error.get("code")
            raise TransactionRejectedError(
                f"The Solana node refused the transaction: {message}",
                next_step="fix the transaction (fresh blockhash, enough balance), sign it "
                "again and resend.",
                rpc_code=code if isinstance(code, int) else _clip(code),
            )
        if result != str(first):
            raise self._unavailable(
                "answered sendTransaction with a signature that is not this transaction's id"
            )
        return str(first)

    def latest_blockhash(self, *, commitment: Commitment | None = None) -> LatestBlockhash:
        """The newest blockhash and the last block height at which it is valid."""
        params: list[Any] = [{"commitment": commitment}] if commitment else []
        result = self._result("getLatestBlockhash", params)
        value = result.get("value") if isinstance(result, dict) else None
        blockhash = value.get("blockhash") if isinstance(value, dict) else None
        height = value.get("lastValidBlockHeight") if isinstance(value, dict) else None
        if (
            isinstance(blockhash, str)
            and _is_hash(blockhash)
            and isinstance(height, int)
            and not isinstance(height, bool)
            and height >= 0
        ):
            return LatestBlockhash(blockhash, height)
        raise self._unavailable("answered getLatestBlockhash with a malformed value")

    def genesis_hash(self) -> str:
        """The cluster's genesis hash (base58): which network the node serves (GENESIS names the
        public ones)."""
        result = self._result("getGenesisHash", [])
        if isinstance(result, str) and _is_hash(result):
            return result
        raise self._unavailable("answered getGenesisHash with a malformed value")

    def get_balance(self, address: str, *, commitment: Commitment | None = None) -> int:
        """The balance of `address` in lamports."""
        key = _pubkey(address)
        params: list[Any] = [key, {"commitment": commitment}] if commitment else [key]
        result = self._result("getBalance", params)
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._unavailable("answered getBalance with a malformed value")
        return value

    def account_owner(self, address: str, *, commitment: Commitment | None = None) -> str | None:
        """The program that owns the account at `address`, or None when no account lives there.

        Only the owner is asked for (a zero-length data slice), so a large account costs nothing.
        """
        key = _pubkey(address)
        config: dict[str, Any] = {"encoding": "base64", "dataSlice": {"offset": 0, "length": 0}}
        if commitment:
            config["commitment"] = commitment
        result = self._result("getAccountInfo", [key, config])
        if not isinstance(result, dict) or "value" not in result:
            raise self._unavailable("answered getAccountInfo with a malformed value")
        value = result["value"]
        if value is None:
            return None
        owner = value.get("owner") if isinstance(value, dict) else None
        try:
            # A non-string owner raises TypeError, answered below like a malformed one.
            return str(Pubkey.from_string(owner))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise self._unavailable("answered getAccountInfo with a malformed owner") from None


def _pubkey(address: str) -> str:
    """`address` as a canonical base58 public key.

    Raises:
        MalformedRequestError: not a Solana address.
    """
    try:
        return str(Pubkey.from_string(address))
    except (ValueError, TypeError):
        raise MalformedRequestError(
            "The address is not a Solana address.", next_step="use a base58 Solana address."
        ) from None
