"""Does a compiled rule's scope cover a resolved request? (The engine's matching step.)

The conditions are checked in the order the engine always had: a rule that cannot be evaluated
(`Unevaluable`: it names an unknown chain, or a URL pattern cannot judge the request's URL)
denies only when no earlier condition already rules it out. Allow/ask rules without `wallets`
never reach here for a signing action (compiled._index).
"""

from __future__ import annotations

from keysafe.policy import urls
from keysafe.policy._resolve import Resolved
from keysafe.policy.compiled import CompiledRule, address_key


class Unevaluable(Exception):
    """A condition cannot be judged; the rule that needed it denies."""


def scope_matches(rule: CompiledRule, r: Resolved) -> bool:
    """Does the rule's scope cover this request?

    Raises:
        Unevaluable: the rule names a chain the registry does not hold, or its URL patterns
            cannot judge the request's URL.
    """
    i = r.intent
    if rule.wallets is not None and (i.wallet is None or i.wallet not in rule.wallets):
        return False
    if rule.chains is not None:
        if r.chain is None:
            return False
        if rule.chain_error is not None:
            raise Unevaluable(rule.chain_error)
        if r.chain.name not in rule.chains:
            return False
    if rule.assets is not None and (r.asset is None or r.asset.peers.upper not in rule.assets):
        return False
    if rule.recipients is not None and (i.to is None or address_key(i.to) not in rule.recipients):
        return False
    if rule.rare and not rare_conditions_hold(rule, r):
        return False
    return rule.hours is None or not rule.hours.contains(r.when)


def rare_conditions_hold(rule: CompiledRule, r: Resolved) -> bool:
    """The conditions after `recipients` and before `outside_hours`, which few rules set (the
    compiled rule says whether it sets any, so most rules skip these tests).

    Raises:
        Unevaluable: a URL pattern cannot judge the request's URL.
    """
    i = r.intent
    if rule.contracts is not None and (
        i.contract is None or address_key(i.contract) not in rule.contracts
    ):
        return False
    if rule.spenders is not None and (
        i.spender is None or address_key(i.spender) not in rule.spenders
    ):
        return False
    if rule.selectors is not None and (i.selector or "").lower() not in rule.selectors:
        return False
    if rule.credentials is not None and i.credential not in rule.credentials:
        return False
    if rule.methods is not None and (i.method or "").upper() not in rule.methods:
        return False
    if rule.data is not None and i.data not in rule.data:
        return False
    if rule.urls is not None and (i.url is None or not _url_matches(rule.urls, i.url)):
        return False
    if rule.primary_types is not None and i.primary_type not in rule.primary_types:
        return False
    if rule.message is not None and (i.message is None or rule.message.search(i.message) is None):
        return False
    return rule.unlimited is None or rule.unlimited == r.unlimited


def _url_matches(patterns: tuple[str, ...], url: str) -> bool:
    """Does any of the rule's URL patterns match?

    Raises:
        Unevaluable: the URL cannot be parsed for matching.
    """
    try:
        return any(urls.url_matches(p, url) for p in patterns)
    except urls.BadUrl as exc:
        raise Unevaluable(f"the URL cannot be judged ({exc})") from None
