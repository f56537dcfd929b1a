"""The transfers keysafe builds decode to exactly the transfer asked for, and sign and verify.

`build_transfer` output goes through the same parser and decoder as any agent's transaction;
these tables pin what each shape decodes to (the e2e tests in tests/e2e/test_transfer.py run
the same builder against LiteSVM).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from keysafe.chains.solana import check_declared, intent_from_tx, parse_transaction
from keysafe.chains.solana.intents import (
    ASSOCIATED_TOKEN_PROGRAM,
    SYSTEM_PROGRAM,
    TOKEN_2022_PROGRAM,
    TOKEN_PROGRAM,
)
from keysafe.chains.solana.signing import sign_transaction
from keysafe.chains.solana.transfers import SplToken, associated_account, build_transfer
from keysafe.policy.intent import Intent
from tests.unit.chains.solana import (
    BLOCKHASH,
    BOB,
    USDC_MINT,
    WALLET,
    registry_with_usdc,
    wallet_seed,
)


@dataclass(frozen=True)
class Case:
    token: SplToken | None
    create: bool
    programs: list[str]  # the programs the transaction calls, in order
    asset: str
    amount: str


USDC = SplToken(str(USDC_MINT), 6, TOKEN_PROGRAM)
CASES = {
    "SOL": Case(None, False, [SYSTEM_PROGRAM], "SOL", "0.25"),
    "SPL to an existing account": Case(USDC, False, [TOKEN_PROGRAM], "USDC", "0.25"),
    "SPL creating the account": Case(
        USDC, True, [ASSOCIATED_TOKEN_PROGRAM, TOKEN_PROGRAM], "USDC", "0.25"
    ),
    "Token-2022 creating the account": Case(
        SplToken(str(USDC_MINT), 6, TOKEN_2022_PROGRAM),
        True,
        [ASSOCIATED_TOKEN_PROGRAM, TOKEN_2022_PROGRAM],
        "USDC",
        "0.25",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_built_transfer_decodes_to_what_was_asked_and_verifies(case: Case) -> None:
    units = 250_000_000 if case.token is None else 250_000
    b64 = build_transfer(
        wallet=str(WALLET),
        to=str(BOB),
        units=units,
        blockhash=str(BLOCKHASH),
        token=case.token,
        create_account=case.create,
    )
    tx = parse_transaction(b64)
    assert [tx.program_id(ix) for ix in tx.instructions] == case.programs
    assert tx.required_signers == (str(WALLET),) and tx.recent_blockhash == str(BLOCKHASH)
    reg = registry_with_usdc()
    decoded = intent_from_tx(
        tx, registry=reg, chain=reg.chain("solana"), wallet_address=str(WALLET)
    )
    assert (decoded.action, decoded.asset, decoded.amount) == (
        "solana.transfer",
        case.asset,
        case.amount,
    )
    # One signature, no priority fee; creating Bob's token account also moves its rent to him
    # (he can close it and keep the lamports), so that is charged as fee too.
    assert decoded.fee == ("0.00204428" if case.create else "0.000005")
    assert ("rent" in decoded.summary) == case.create
    declared = Intent(
        action="solana.transfer", chain="solana", asset=case.asset, amount=case.amount, to=str(BOB)
    )
    judged = check_declared(decoded, declared)
    assert judged.to == str(BOB)  # the owner's wallet, also when the account is its token account
    if case.token is not None:  # the destination is Bob's associated account for that program
        expected = get_associated_token_address(
            BOB, USDC_MINT, Pubkey.from_string(case.token.program)
        )
        assert decoded.to == associated_account(str(BOB), case.token) == str(expected)
    signed = sign_transaction(tx, wallet_seed())  # verifies every signature itself
    assert signed.signature_b58


def test_built_transfer_refuses_amounts_a_u64_cannot_carry() -> None:
    for units in (0, 2**64):
        with pytest.raises(ValueError, match="64-bit"):
            build_transfer(wallet=str(WALLET), to=str(BOB), units=units, blockhash=str(BLOCKHASH))
