"""Every owner operation, as the one body `POST /v1/owner/ops` accepts (by its `kind`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from keysafe.service.owner_keygen import KeygenExchange, KeygenStart, ReshareStart
from keysafe.service.owner_notify import AddWebhook, RemoveChannel, SendTest, SetTelegram
from keysafe.service.owner_ops import (
    AddAgent,
    AddAsset,
    AddChain,
    AddCredential,
    CreateBackup,
    CreateInvite,
    CreateWallet,
    ImportWallet,
    IssuePlaceholder,
    ListWallets,
    PauseAll,
    RemoveCredential,
    RemoveData,
    RestoreBackup,
    ReviewSeals,
    RotateEpochs,
    RotateToken,
    SealRows,
    SetAgentStatus,
    SetData,
    SetPolicy,
    SetRotationPolicy,
)
from keysafe.service.owner_signing import (
    SignMessage,
    ThresholdCommit,
    ThresholdCosign,
    ThresholdExchange,
)

AnyOp = Annotated[
    AddAgent
    | SetAgentStatus
    | RotateToken
    | PauseAll
    | SetPolicy
    | AddCredential
    | IssuePlaceholder
    | RemoveCredential
    | SetData
    | RemoveData
    | CreateWallet
    | ImportWallet
    | ListWallets
    | SignMessage
    | ThresholdCommit
    | ThresholdExchange
    | ThresholdCosign
    | AddChain
    | AddAsset
    | KeygenStart
    | ReshareStart
    | KeygenExchange
    | ReviewSeals
    | SealRows
    | CreateBackup
    | RestoreBackup
    | CreateInvite
    | RotateEpochs
    | SetRotationPolicy
    | AddWebhook
    | SetTelegram
    | RemoveChannel
    | SendTest,
    Field(discriminator="kind"),
]
