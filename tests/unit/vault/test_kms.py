"""vault/kms/ against real KMS servers (OpenBao dev, moto), and the vault unlocking through them.

Each provider: a key wraps and unwraps; the two failures are told apart (`reason` "unreachable"
or "refused"); a blob bound to another vault or key does not open (IntegrityError); `destroy`
crypto-shreds; nothing a provider says or shows contains its token.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysafe.api.state import ServerState
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import (
    IntegrityError,
    KmsUnavailableError,
    MalformedRequestError,
    NotAuthenticatedError,
    WrongPassphraseError,
)
from keysafe.service import doctor, vault_admin
from keysafe.service.findings import Status
from keysafe.store.db import Database
from keysafe.testing import CHEAP_KDF, free_port
from keysafe.vault import kms
from keysafe.vault.home import Home
from keysafe.vault.kms import KmsConfig, KmsKind, KmsReason
from keysafe.vault.vault import Vault
from tests.kms_servers import Moto, OpenBao, moto_server, openbao_server

VAULT_A = "a" * 32
VAULT_B = "b" * 32


@pytest.fixture(scope="module")
def bao() -> Iterator[OpenBao]:
    with openbao_server() as server:
        yield server


@pytest.fixture(scope="module")
def aws(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Moto]:
    with moto_server() as server:
        for name, value in server.env.items():
            monkeypatch_module.setenv(name, value)
        yield server


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _bao(bao: OpenBao, *, token: str | None = None, key: str | None = None) -> kms.KmsProvider:
    config = KmsConfig.build("openbao", url=bao.url, key=key or bao.key)
    return kms.provider_for(
        config, token=SecretBytes(bytearray((token or bao.token).encode())), url=bao.url
    )


def _aws(aws: Moto, key: str | None = None, url: str | None = None) -> kms.KmsProvider:
    config = KmsConfig.build("aws-kms", url=url or aws.url, key=key or aws.key_id)
    return kms.provider_for(config, token=None)


def _kek() -> SecretBytes:
    return SecretBytes(bytearray(secrets.token_bytes(32)))


def _ctx(provider: kms.KmsProvider, vault_id: str = VAULT_A) -> dict[str, str]:
    return kms.context_for(vault_id, provider.config)


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url", "key", "words"),
    [
        ("gcp", None, "k", "Unknown key provider"),
        ("openbao", None, "k", "--kms-url"),
        ("openbao", "http://127.0.0.1:8200", None, "--kms-key"),
        ("openbao", "http://bao.example:8200", "k", "in clear"),
        ("openbao", "https://user:pw@bao.example", "k", "without credentials"),
        ("aws-kms", None, None, "--kms-key"),
    ],
    ids=["unknown", "no-url", "no-key", "http-remote", "creds-in-url", "aws-no-key"],
)
def test_config_build_refuses_what_cannot_work(
    kind: str, url: str | None, key: str | None, words: str
) -> None:
    with pytest.raises(MalformedRequestError, match=words):
        KmsConfig.build(kind, url=url, key=key)


def test_openbao_without_a_token_is_refused_before_any_call() -> None:
    config = KmsConfig.build("openbao", url="http://127.0.0.1:1", key="k")
    with pytest.raises(MalformedRequestError, match="KEYSAFE_KMS_TOKEN"):
        kms.provider_for(config, token=None)


# -- OpenBao transit -----------------------------------------------------------------------------


def test_openbao_wraps_and_unwraps_and_reports_health(bao: OpenBao) -> None:
    provider = _bao(bao)
    kek = _kek()
    blob = provider.wrap(kek, context=_ctx(provider))
    assert blob.startswith(b"vault:v1:") and kek.reveal() not in blob
    assert provider.unwrap(blob, context=_ctx(provider)) == kek
    health = provider.health()
    assert health.ok and bao.url in health.detail
    assert bao.token not in repr(provider) + repr(provider.config) + health.detail


def test_openbao_wrong_token_is_refused_not_unreachable(bao: OpenBao) -> None:
    blob = _bao(bao).wrap(_kek(), context={})
    provider = _bao(bao, token="s.not-the-token")
    with pytest.raises(KmsUnavailableError, match="refused") as caught:
        provider.unwrap(blob, context={})
    assert caught.value.facts["reason"] == KmsReason.REFUSED
    assert "s.not-the-token" not in str(caught.value) + repr(caught.value.to_dict())
    assert not provider.health().ok


def test_openbao_nothing_listening_is_unreachable() -> None:
    config = KmsConfig.build("openbao", url=f"http://127.0.0.1:{free_port()}", key="k")
    provider = kms.provider_for(config, token=SecretBytes(b"t"), url=config.url)
    with pytest.raises(KmsUnavailableError, match="did not answer") as caught:
        provider.unwrap(b"vault:v1:xx", context={})
    assert caught.value.facts["reason"] == KmsReason.UNREACHABLE
    assert "keysafe recover" in caught.value.next_step


def test_attack_openbao_blob_of_another_key_is_rejected(bao: OpenBao) -> None:
    bao.create_key("unit-other")
    blob = _bao(bao, key="unit-other").wrap(_kek(), context={})
    with pytest.raises(IntegrityError, match="will not open"):
        _bao(bao).unwrap(blob, context={})


def test_openbao_destroy_deletes_the_key_and_its_blobs_no_longer_open(bao: OpenBao) -> None:
    bao.create_key("unit-doomed")
    provider = _bao(bao, key="unit-doomed")
    blob = provider.wrap(_kek(), context={})
    assert "deleted" in provider.destroy()
    with pytest.raises(IntegrityError):
        provider.unwrap(blob, context={})


# -- AWS KMS (moto) ------------------------------------------------------------------------------


def test_aws_wraps_under_a_data_key_and_unwraps(aws: Moto) -> None:
    provider = _aws(aws)
    kek = _kek()
    blob = provider.wrap(kek, context=_ctx(provider))
    assert kek.reveal() not in blob
    assert provider.unwrap(blob, context=_ctx(provider)) == kek
    assert provider.health().ok


def test_attack_aws_blob_of_another_vault_is_rejected(aws: Moto) -> None:
    """The encryption context names the vault: KMS itself refuses B's blob for A."""
    provider = _aws(aws)
    blob = provider.wrap(_kek(), context=_ctx(provider, VAULT_B))
    with pytest.raises(IntegrityError, match="another key or vault"):
        provider.unwrap(blob, context=_ctx(provider, VAULT_A))


def test_aws_unknown_key_is_refused_and_no_endpoint_is_unreachable(aws: Moto) -> None:
    missing = _aws(aws, key="11111111-2222-3333-4444-555555555555")
    with pytest.raises(KmsUnavailableError, match="no such key") as caught:
        missing.wrap(_kek(), context={})
    assert caught.value.facts["reason"] == KmsReason.REFUSED
    down = _aws(aws, url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(KmsUnavailableError, match="did not answer") as caught:
        down.wrap(_kek(), context={})
    assert caught.value.facts["reason"] == KmsReason.UNREACHABLE


def test_aws_destroy_disables_and_schedules_deletion(aws: Moto) -> None:
    key = aws.client().create_key(Description="doomed")["KeyMetadata"]["KeyId"]
    provider = _aws(aws, key=key)
    provider.wrap(_kek(), context={})
    assert "7 days" in provider.destroy()
    # (moto does not refuse Decrypt under a disabled key as AWS does; the state is what it keeps)
    state = aws.client().describe_key(KeyId=key)["KeyMetadata"]["KeyState"]
    assert state == "PendingDeletion"


# -- the vault through a provider ----------------------------------------------------------------


def test_vault_made_with_openbao_unlocks_through_it_and_refuses_passphrases(
    bao: OpenBao, tmp_path: Path
) -> None:
    home = Home(tmp_path / "h")
    token = SecretBytes(bao.token.encode())
    config = KmsConfig.build("openbao", url=bao.url, key=bao.key)
    made, phrase = vault_admin.init_vault(home, None, kms=config, kms_token=token)
    phrase.wipe()
    vault_id = made.vault_id
    proof = made.owner_proof("c" * 64)
    made.lock()
    made.db.close()
    vault = Vault.open(Database.open_sqlite(home.db_path, create=False))
    try:
        assert vault.kms_config() == config
        with pytest.raises(MalformedRequestError, match="has no passphrase"):
            vault.unlock(SecretBytes(b"correct horse battery staple"))
        with pytest.raises(MalformedRequestError, match="not aws-kms"):
            vault.unlock_with_kms(kms.provider_for(KmsConfig(KmsKind.AWS, None, "x"), token=None))
        vault_admin.unlock_with_kms(vault, token, bao.url)
        assert vault.is_unlocked and vault.vault_id == vault_id
        assert vault.check_owner_proof("c" * 64, proof)
        assert not vault.check_owner_proof("d" * 64, proof)
        with pytest.raises(MalformedRequestError, match="has no passphrase"):
            vault_admin.change_passphrase(vault, SecretBytes(b"a new long passphrase here"))
    finally:
        vault.lock()
        vault.db.close()


def test_wrong_passphrase_error_is_still_the_local_vaults(tmp_path: Path) -> None:
    """`local` stays today's format: the passphrase, Argon2id, no provider columns."""
    home = Home(tmp_path / "h")
    made, phrase = vault_admin.init_vault(
        home, SecretBytes(b"correct horse battery staple"), kdf=CHEAP_KDF
    )
    phrase.wipe()
    assert made.kms_config() == KmsConfig.local()
    made.lock()
    with pytest.raises(WrongPassphraseError):
        made.unlock(SecretBytes(b"wrong horse battery staple"))
    made.db.close()


def _kms_vault(bao: OpenBao, home: Path, key: str | None = None) -> str:
    """A vault made through OpenBao in `home`, closed; returns its id."""
    config = KmsConfig.build("openbao", url=bao.url, key=key or bao.key)
    made, phrase = vault_admin.init_vault(
        Home(home), None, kms=config, kms_token=SecretBytes(bao.token.encode())
    )
    phrase.wipe()
    made.lock()
    made.db.close()
    return made.vault_id


def _edit_header(home: Path, **values: object) -> None:
    with sqlite3.connect(home / "vault.db") as db:
        names = ", ".join(f"{k} = ?" for k in values)
        db.execute(f"UPDATE vault SET {names}", tuple(values.values()))


def _header(home: Path) -> dict[str, object]:
    with sqlite3.connect(home / "vault.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM vault").fetchone())


def _try_unlock(bao: OpenBao, home: Path) -> None:
    vault = Vault.open(Database.open_sqlite(home / "vault.db", create=False))
    try:
        vault_admin.unlock_with_kms(vault, SecretBytes(bao.token.encode()), bao.url)
    finally:
        vault.lock()
        vault.db.close()


def test_attack_other_vaults_wrapped_key_in_the_header_is_refused(
    bao: OpenBao, tmp_path: Path
) -> None:
    """Both vaults use one transit key; B's wrapped key and wrapped master are copied into A's
    header. The KMS opens B's key, but A's id is bound into the master key's associated data."""
    _kms_vault(bao, tmp_path / "a")
    _kms_vault(bao, tmp_path / "b")
    theirs = _header(tmp_path / "b")
    _edit_header(
        tmp_path / "a",
        kms_blob=theirs["kms_blob"],
        master_nonce=theirs["master_nonce"],
        master_wrapped=theirs["master_wrapped"],
    )
    with pytest.raises(IntegrityError, match="does not open this vault's master key"):
        _try_unlock(bao, tmp_path / "a")


def test_attack_header_pointed_at_another_kms_key_is_refused(bao: OpenBao, tmp_path: Path) -> None:
    """The header is edited to name another transit key the token may use: transit will not
    decrypt a blob its key did not make."""
    bao.create_key("unit-swap")
    _kms_vault(bao, tmp_path / "a")
    _edit_header(tmp_path / "a", kms_key="unit-swap")
    with pytest.raises(IntegrityError, match="will not open this vault's wrapped key"):
        _try_unlock(bao, tmp_path / "a")


def test_attack_header_moved_to_local_provider_is_refused(bao: OpenBao, tmp_path: Path) -> None:
    """Clearing the provider columns does not turn a KMS vault into a passphrase vault anyone
    can open: there is no Argon2id key behind it, so no passphrase opens it."""
    _kms_vault(bao, tmp_path / "a")
    _edit_header(tmp_path / "a", kms_kind=None)
    vault = Vault.open(Database.open_sqlite(tmp_path / "a" / "vault.db", create=False))
    try:
        with pytest.raises((IntegrityError, WrongPassphraseError)):
            vault.unlock(SecretBytes(b"anything at all, really"))
        assert not vault.is_unlocked
    finally:
        vault.db.close()


def test_init_with_the_kms_down_fails_and_leaves_no_vault(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    config = KmsConfig.build("openbao", url=f"http://127.0.0.1:{free_port()}", key="k")
    with pytest.raises(KmsUnavailableError, match="did not answer"):
        vault_admin.init_vault(home, None, kms=config, kms_token=SecretBytes(b"t"))
    assert not home.exists() and not home.db_path.exists()


def test_owner_login_with_a_wrong_proof_is_refused_audited_and_relocks(
    bao: OpenBao, tmp_path: Path
) -> None:
    """Reaching the server is not being the owner: the server unlocks through its own KMS
    access to check the proof, and locks again when the proof is wrong."""
    _kms_vault(bao, tmp_path / "a")
    vault = Vault.open(Database.open_sqlite(tmp_path / "a" / "vault.db", create=False))
    token = SecretBytes(bao.token.encode())
    try:
        with pytest.raises(NotAuthenticatedError, match="owner proof"):
            vault_admin.kms_owner_login(vault, token, bao.url, challenge="c" * 64, proof="0" * 64)
        assert not vault.is_unlocked
        with sqlite3.connect(tmp_path / "a" / "vault.db") as db:
            last = db.execute("SELECT action, outcome FROM audit ORDER BY seq DESC").fetchone()
        assert last == ("vault.unlock", "failure")
        vault_admin.unlock_with_kms(vault, token, bao.url)
        proof = vault_admin.owner_proof(vault, "c" * 64)
        vault.lock()
        vault_admin.kms_owner_login(vault, token, bao.url, challenge="c" * 64, proof=proof)
        assert vault.is_unlocked
    finally:
        vault.lock()
        vault.db.close()


def test_login_challenges_are_single_use() -> None:
    state = ServerState(Home(Path("/nonexistent")), vault=None)  # type: ignore[arg-type]
    challenge = state.new_challenge()
    assert state.take_challenge(challenge)
    assert not state.take_challenge(challenge)
    assert not state.take_challenge("f" * 64)


def test_doctor_shows_the_provider_and_asks_it_without_showing_the_token(
    bao: OpenBao, tmp_path: Path
) -> None:
    _kms_vault(bao, tmp_path / "a")
    home = Home(tmp_path / "a")
    url = f"http://127.0.0.1:{free_port()}"
    ok = doctor.diagnose(
        home, server_url=url, kms_token=SecretBytes(bao.token.encode()), kms_url=bao.url
    )
    found = {f.check: f for f in ok.findings}
    assert "kdf" not in found  # no passphrase, no Argon2id to report
    assert found["kms"].status is Status.OK
    assert f"openbao at {bao.url}, key {bao.key} answers" in found["kms"].summary
    denied = doctor.diagnose(
        home, server_url=url, kms_token=SecretBytes(b"s.wrong"), kms_url=bao.url
    )
    kms_finding = next(f for f in denied.findings if f.check == "kms")
    assert kms_finding.status is Status.FAIL and "keysafe recover" in (kms_finding.fix or "")
    untold = doctor.diagnose(home, server_url=url)
    assert next(f for f in untold.findings if f.check == "kms").status is Status.WARN
    assert bao.token not in json.dumps(
        [r.model_dump(mode="json", by_alias=True) for r in (ok, denied, untold)]
    )


def test_attack_a_header_pointing_openbao_elsewhere_never_gets_the_token(
    bao: OpenBao, tmp_path: Path
) -> None:
    """Someone who can write the database points `kms_url` at a listener of theirs. The token
    goes only to the address the operator gives with it (KEYSAFE_KMS_URL): the listener hears
    nothing, the unlock works through the real OpenBao, and without the operator's address
    nothing is sent at all. (Before, the header's URL got the token: with it and the header's
    blob, the real OpenBao opened the key that wraps the master key.)"""
    _kms_vault(bao, tmp_path / "a")
    heard: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    trap = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def listen() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    heard.append(conn.recv(65536))

    stop = threading.Event()
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    with sqlite3.connect(tmp_path / "a" / "vault.db") as db:
        db.execute("UPDATE vault SET kms_url = ?", (trap,))
    vault = Vault.open(Database.open_sqlite(tmp_path / "a" / "vault.db", create=False))
    token = SecretBytes(bao.token.encode())
    try:
        with pytest.raises(MalformedRequestError, match="KEYSAFE_KMS_URL"):
            vault_admin.unlock_with_kms(vault, token, None)
        vault_admin.unlock_with_kms(vault, token, bao.url)
        assert vault.is_unlocked
    finally:
        vault.lock()
        vault.db.close()
        stop.set()
        thread.join(5)
        listener.close()
    assert heard == []
