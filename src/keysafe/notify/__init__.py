"""Notifications that leave the vault: what they say (`notice`), how a webhook delivery is
signed (`webhook`), and how a Telegram bot is driven (`telegram`).

Domain code: no surface, no service. Which events reach which channel, the outbox and the
owner's decisions from Telegram are in keysafe/service/notify.py and notify_telegram.py.
"""
