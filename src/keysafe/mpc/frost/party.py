"""A threshold signer in a process of its own, reached over a pipe:
`python -m keysafe.mpc.frost.party`.

Where two shares of one wallet meet without a vault (`keysafe wallet recover-sign`), the agent's
share is opened and signs in a child process and the parent holds the recovery share and
coordinates, so no process ever holds both. One JSON object per line on stdin and stdout:

    parent -> child   {"share_file": PATH, "secret": SHARE_KEY, "message": HEX}      (FROST)
                   or {"share_file": PATH, "secret": SHARE_KEY, "evm": {"message": TEXT}
                                                                 or {"transaction": TX}} (DKLs23)
    child  -> parent  {"identifier": 1, "wallet": NAME, "public": PUBLIC_PACKAGE}
  FROST, the session protocol's wire messages (`session.py`, S0–S3):
    parent -> child   {"round1": HEX}   (a SignRequest)      child -> parent  {"round1": HEX}
    parent -> child   {"round2": HEX}   (a SigningPackage)   child -> parent  {"round2": HEX}
  DKLs23 (EVM), the child hashing the message or transaction itself:
    parent -> child   {"dkls_round1": {"session_id": HEX, "protocol": "dkls23"}}
    child  -> parent  {"session_id", "round1", "verifying_share"}
    parent -> child   {"dkls_round2": {"session_id", "round1", "round2"}}   (the parent's)
    child  -> parent  {"session_id", "round2", "round3"}     (the parent finishes and checks)

The child signs only the message it was started for, checks every message as its own Signer
does, keeps its nonces in memory, and answers an error as {"error": KeysafeError.to_dict()}
before it exits. The secret crosses the pipe, never a command line or an environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from keysafe.errors import KeysafeError, MalformedRequestError, from_dict
from keysafe.mpc import share_file
from keysafe.mpc.dkls import cosigner as dkls_cosigner
from keysafe.mpc.frost import session
from keysafe.mpc.frost.keys import AGENT, RECOVERY, PublicKeyPackage
from keysafe.mpc.share_file import SecretBytes

TIMEOUT_S: Final = 60.0


class PipeSigner:
    """The parent's end: a `session.SignerEndpoint` whose signer runs in a child process."""

    def __init__(
        self,
        share_path: Path,
        secret: SecretBytes,
        message: bytes | None = None,
        evm: dict[str, Any] | None = None,
    ) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "keysafe.mpc.frost.party"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            with secret:
                hello: dict[str, Any] = {
                    "share_file": str(share_path),
                    "secret": bytes(secret.reveal()).decode(),
                }
                hello |= {"evm": evm} if evm is not None else {"message": (message or b"").hex()}
            answer = self._ask(hello)
            del hello
            self.identifier = int(answer["identifier"])
            self.wallet = str(answer.get("wallet"))
            self.public = PublicKeyPackage.from_dict(answer["public"])
        except BaseException:
            self.close()  # the child is reaped whatever went wrong
            raise

    def dkls_round1(self, session_id: bytes) -> dict[str, Any]:
        return self._ask({"dkls_round1": {"session_id": session_id.hex(), "protocol": "dkls23"}})

    def dkls_rounds(self, mine: dict[str, str]) -> dict[str, Any]:
        return self._ask({"dkls_round2": mine})

    def handle_round1(self, data: bytes) -> bytes:
        return bytes.fromhex(str(self._ask({"round1": data.hex()})["round1"]))

    def handle_round2(self, data: bytes) -> bytes:
        return bytes.fromhex(str(self._ask({"round2": data.hex()})["round2"]))

    def _ask(self, order: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._child.stdin, self._child.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps(order) + "\n")
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise MalformedRequestError(
                "The agent's signing process ended without answering.",
                next_step="run the command again; if it repeats, check the agent share file.",
            )
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise from_dict(answer["error"])
        return answer

    def close(self) -> None:
        if self._child.stdin is not None:
            self._child.stdin.close()
        try:
            self._child.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        if self._child.stdout is not None:
            self._child.stdout.close()

    def __enter__(self) -> PipeSigner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _serve(lines: Any, out: Any) -> None:
    """The child's loop: open the agent share, then answer the two rounds of one session."""
    hello = json.loads(next(lines))
    doc = share_file.read(Path(hello["share_file"]), "agent share file")
    with SecretBytes(bytearray(str(hello["secret"]).encode())) as secret:
        share = share_file.open_agent_share(doc, secret)
    key = share.key
    if key.identifier != AGENT:
        raise MalformedRequestError(
            "That file does not hold an agent share.", next_step="give the agent share file."
        )
    if "evm" in hello:
        _serve_dkls(share, hello["evm"], doc, lines, out)
        return
    message = bytes.fromhex(hello["message"])
    signer = session.Signer(
        key, session.MemoryNonceStore(), check_message=lambda r: r.message == message
    )
    _say(
        out,
        {"identifier": key.identifier, "wallet": doc.get("wallet"), "public": key.public.to_dict()},
    )
    for line in lines:
        order = json.loads(line)
        if "round1" in order:
            _say(out, {"round1": signer.handle_round1(bytes.fromhex(order["round1"])).hex()})
        elif "round2" in order:
            _say(out, {"round2": signer.handle_round2(bytes.fromhex(order["round2"])).hex()})
            return  # one signature per process
        else:
            raise MalformedRequestError("Unknown order.", next_step="this is a keysafe bug.")


def _serve_dkls(
    share: share_file.Share, what: dict[str, Any], doc: dict[str, Any], lines: Any, out: Any
) -> None:
    """One DKLs23 signature with the recovery party, over a digest computed here."""
    if not share.pairs or RECOVERY not in share.pairs:
        raise MalformedRequestError(
            "That agent share is not an EVM (DKLs23) share.", next_step="give the EVM wallet's."
        )
    if "transaction" in what:
        digest = dkls_cosigner.transaction_digest(what["transaction"])
    else:
        digest = dkls_cosigner.message_digest(str(what["message"]))
    _say(
        out,
        {
            "identifier": share.key.identifier,
            "wallet": doc.get("wallet"),
            "public": share.key.public.to_dict(),
        },
    )
    first = json.loads(next(lines))["dkls_round1"]
    state, mine = dkls_cosigner.start(share.key, share.pairs[RECOVERY], first, digest)
    _say(out, mine)
    theirs = json.loads(next(lines))["dkls_round2"]
    _say(out, dkls_cosigner.finish(state, theirs))


def _say(out: Any, answer: dict[str, Any]) -> None:
    out.write(json.dumps(answer) + "\n")
    out.flush()


def main() -> int:
    try:
        _serve(iter(sys.stdin), sys.stdout)
    except KeysafeError as exc:
        _say(sys.stdout, {"error": exc.to_dict()})
        return 1
    except (StopIteration, ValueError, KeyError) as exc:
        _say(
            sys.stdout,
            {
                "error": MalformedRequestError(
                    f"The signing process got a malformed order ({type(exc).__name__}).",
                    next_step="this is a keysafe bug; nothing was signed.",
                ).to_dict()
            },
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
