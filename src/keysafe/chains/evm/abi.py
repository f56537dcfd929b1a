"""The built-in selector table and calldata decoding.

A call is known when its 4-byte selector is in `FUNCTIONS`; its arguments are then decoded with
eth-abi in strict mode (dirty padding, a bool other than 0/1 and truncated arguments are refused,
as Solidity's own decoder would revert). Bytes after the last argument are tolerated, as Solidity
ignores them too. An unknown selector is not an error: it becomes a `DecodedCall` with no
function, which the policy sees as an opaque `evm.call`.

Selectors are computed from the signatures below at import, never typed by hand, and two
signatures with the same selector are refused then (a collision would make decoding ambiguous).

    >>> decode_call(bytes.fromhex("d0e30db0")).function
    'deposit()'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from keysafe.chains.addresses import to_checksum
from keysafe.errors import MalformedRequestError

__all__ = ["FUNCTIONS", "PERMIT2_ADDRESS", "DecodedCall", "FunctionSpec", "decode_call", "lookup"]

logger = logging.getLogger(__name__)

# Uniswap's Permit2, deployed with CREATE2 at the same address on every chain.
PERMIT2_ADDRESS: Final = "0x000000000022D473030F116dDEE9F6B43aC78BA3"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A known function: its name, typed parameters and the standard it comes from."""

    name: str
    params: tuple[tuple[str, str], ...]  # (ABI type, argument name)
    standard: str  # where it comes from, for readers: "ERC-20", "Uniswap V3", …

    @property
    def types(self) -> tuple[str, ...]:
        """The parameters' ABI types, in order."""
        return tuple(t for t, _ in self.params)

    @property
    def signature(self) -> str:
        """e.g. "transfer(address,uint256)"."""
        return f"{self.name}({','.join(self.types)})"

    @property
    def selector(self) -> str:
        """ "0x" + the first 4 bytes of keccak256(signature)."""
        return "0x" + keccak(text=self.signature)[:4].hex()


@dataclass(frozen=True, slots=True)
class DecodedCall:
    """Calldata split into its selector and, for a known function, its named arguments."""

    selector: str  # "0x" + 8 lower-case hex digits
    function: str | None  # the signature, e.g. "transfer(address,uint256)"; None when unknown
    args: Mapping[str, Any] = field(default_factory=dict)  # addresses are EIP-55

    @property
    def name(self) -> str | None:
        """The function's name without its parameters; None when unknown."""
        return self.function.split("(", 1)[0] if self.function else None


def _spec(standard: str, name: str, *params: str) -> FunctionSpec:
    pairs = []
    for p in params:
        # "type name"; a tuple type contains no spaces, so the last space splits.
        abi_type, _, arg = p.rpartition(" ")
        pairs.append((abi_type, arg))
    return FunctionSpec(name, tuple(pairs), standard)


# The Uniswap V2 router's swaps take their amounts first (most of them an exact input and a
# minimum output) and all end in the same route: the token path, the recipient, the deadline.
_V2_EXACT_IN: Final = ("uint256 amountIn", "uint256 amountOutMin")
_V2_ROUTE: Final = ("address[] path", "address to", "uint256 deadline")
_V3_SINGLE: Final = "(address,address,uint24,address,uint256,uint256,uint256,uint160)"
_V3_SINGLE_02: Final = "(address,address,uint24,address,uint256,uint256,uint160)"

_SPECS: Final = (
    # ERC-20
    _spec("ERC-20", "transfer", "address to", "uint256 amount"),
    _spec("ERC-20", "transferFrom", "address from", "address to", "uint256 amount"),
    _spec("ERC-20", "approve", "address spender", "uint256 amount"),
    _spec("ERC-20", "increaseAllowance", "address spender", "uint256 amount"),
    _spec("ERC-20", "decreaseAllowance", "address spender", "uint256 amount"),
    _spec("ERC-20", "balanceOf", "address account"),
    _spec("ERC-20", "allowance", "address owner", "address spender"),
    _spec(
        "EIP-2612",
        "permit",
        "address owner",
        "address spender",
        "uint256 value",
        "uint256 deadline",
        "uint8 v",
        "bytes32 r",
        "bytes32 s",
    ),
    # ERC-721 (transferFrom and approve share their selectors with ERC-20)
    _spec("ERC-721", "safeTransferFrom", "address from", "address to", "uint256 tokenId"),
    _spec(
        "ERC-721",
        "safeTransferFrom",
        "address from",
        "address to",
        "uint256 tokenId",
        "bytes data",
    ),
    _spec("ERC-721", "setApprovalForAll", "address operator", "bool approved"),
    # ERC-1155
    _spec(
        "ERC-1155",
        "safeTransferFrom",
        "address from",
        "address to",
        "uint256 id",
        "uint256 amount",
        "bytes data",
    ),
    _spec(
        "ERC-1155",
        "safeBatchTransferFrom",
        "address from",
        "address to",
        "uint256[] ids",
        "uint256[] amounts",
        "bytes data",
    ),
    # WETH
    _spec("WETH", "deposit"),
    _spec("WETH", "withdraw", "uint256 amount"),
    # Multicall (Uniswap periphery, Multicall2/3)
    _spec("Multicall", "multicall", "bytes[] data"),
    _spec("Multicall", "multicall", "uint256 deadline", "bytes[] data"),
    _spec("Multicall", "multicall", "bytes32 previousBlockhash", "bytes[] data"),
    _spec("Multicall", "aggregate", "(address,bytes)[] calls"),
    _spec("Multicall", "aggregate3", "(address,bool,bytes)[] calls"),
    _spec("Multicall", "tryAggregate", "bool requireSuccess", "(address,bytes)[] calls"),
    # Uniswap V2 router
    _spec("Uniswap V2", "swapExactTokensForTokens", *_V2_EXACT_IN, *_V2_ROUTE),
    _spec(
        "Uniswap V2",
        "swapTokensForExactTokens",
        "uint256 amountOut",
        "uint256 amountInMax",
        *_V2_ROUTE,
    ),
    _spec("Uniswap V2", "swapExactETHForTokens", "uint256 amountOutMin", *_V2_ROUTE),
    _spec("Uniswap V2", "swapExactTokensForETH", *_V2_EXACT_IN, *_V2_ROUTE),
    # Uniswap V3 SwapRouter and SwapRouter02 (which dropped `deadline` from the params)
    _spec("Uniswap V3", "exactInputSingle", f"{_V3_SINGLE} params"),
    _spec("Uniswap V3", "exactInputSingle", f"{_V3_SINGLE_02} params"),
    _spec("Uniswap V3", "exactInput", "(bytes,address,uint256,uint256,uint256) params"),
    _spec("Uniswap V3", "exactInput", "(bytes,address,uint256,uint256) params"),
    _spec("Uniswap V3", "unwrapWETH9", "uint256 amountMinimum", "address recipient"),
    _spec("Uniswap V3", "refundETH"),
    # Uniswap Universal Router
    _spec("Universal Router", "execute", "bytes commands", "bytes[] inputs", "uint256 deadline"),
    _spec("Universal Router", "execute", "bytes commands", "bytes[] inputs"),
    # Permit2's on-chain allowance (only read as an approval when sent to PERMIT2_ADDRESS)
    _spec(
        "Permit2",
        "approve",
        "address token",
        "address spender",
        "uint160 amount",
        "uint48 expiration",
    ),
)


def _build_table(specs: tuple[FunctionSpec, ...]) -> dict[str, FunctionSpec]:
    table: dict[str, FunctionSpec] = {}
    for spec in specs:
        if spec.selector in table:
            other = table[spec.selector].signature
            raise RuntimeError(f"selector collision: {spec.signature} and {other}")
        table[spec.selector] = spec
    return table


FUNCTIONS: Final[Mapping[str, FunctionSpec]] = _build_table(_SPECS)


def lookup(selector: str) -> FunctionSpec | None:
    """The known function for a selector ("0xa9059cbb"), or None."""
    return FUNCTIONS.get(selector.lower())


def _normalise(abi_type: str, value: Any) -> Any:
    """Addresses to EIP-55 (eth-abi returns lower case), recursively through arrays and tuples."""
    if abi_type == "address":
        return to_checksum(value)
    if abi_type.endswith("[]"):
        inner = abi_type[:-2]
        return tuple(_normalise(inner, v) for v in value)
    if abi_type.startswith("(") and abi_type.endswith(")"):
        inner_types = _split_tuple(abi_type[1:-1])
        return tuple(_normalise(t, v) for t, v in zip(inner_types, value, strict=True))
    return value


def _split_tuple(body: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p for p in parts if p]


def decode_call(data: bytes) -> DecodedCall | None:
    """Decode calldata. None for empty calldata (a plain value transfer).

    Raises:
        MalformedRequestError: calldata shorter than a selector, or arguments of a known function
            that do not decode (truncated, dirty padding, out-of-range values).
    """
    if not data:
        return None
    if len(data) < 4:
        raise MalformedRequestError(
            f"the calldata is {len(data)} byte(s), shorter than a 4-byte function selector.",
            next_step="send the full calldata (selector and arguments), or none for a plain "
            "transfer.",
        )
    selector = "0x" + data[:4].hex()
    spec = FUNCTIONS.get(selector)
    if spec is None:
        return DecodedCall(selector, None)
    failure: str | None = None
    try:
        values = abi_decode(list(spec.types), data[4:], strict=True)
    except Exception as exc:  # eth-abi raises several unrelated types for bad input
        failure = type(exc).__name__
    if failure is not None:
        raise MalformedRequestError(
            f"the calldata for {spec.signature} does not decode ({failure}; "
            f"{len(data) - 4} bytes of arguments).",
            next_step="rebuild the calldata with a proper ABI encoder.",
        )
    args = {
        name: _normalise(abi_type, value)
        for (abi_type, name), value in zip(spec.params, values, strict=True)
    }
    return DecodedCall(selector, spec.signature, args)
