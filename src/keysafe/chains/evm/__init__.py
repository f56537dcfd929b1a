"""EVM support: parse transactions, decode what they would do, sign, verify and talk to a node.

- `tx`: an unsigned transaction (`EvmTx`) from a JSON dict or unsigned RLP, and back.
- `abi`: the built-in selector table and calldata decoding.
- `intents`: the `Intent` a policy judges, built from a transaction, a personal_sign message or
  EIP-712 typed data, with a human summary.
- `signing`: sign inside the vault, then verify the result against the checked request.
- `rpc`: a small JSON-RPC client that fills missing nonce, gas and fees and broadcasts.
"""
