"""Endpoints that keep failing are disabled, with the reason, as a ``webhook.disabled`` event.

The streak (deliveries in a row that ended failed, since the webhook was created or last
re-enabled) is kept in a key-value bucket shared by every notifier, updated with compare-and-swap.
No instance keeps a copy of it: a success is written unless the bucket itself shows no streak,
since another instance's failures may have started one since this instance last looked.
It is bookkeeping, not history: the decision is the event, and a lost bucket only means counting
from zero again.
"""

from __future__ import annotations

import json
import logging

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.core.events import WebhookDisabled, make_event
from crewyard.core.ids import new_id
from crewyard.core.webhooks import WebhookState, fold_webhook
from crewyard.eventstore import ConcurrencyConflict, EventStore

log = logging.getLogger("crewyard.notifier")
BUCKET = "CREWYARD_WEBHOOK_HEALTH"


class Health:
    def __init__(self, store: EventStore, disable_after: int) -> None:
        self.store, self.disable_after = store, disable_after
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.store.js.key_value(BUCKET)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.store.js.create_key_value(
                    KeyValueConfig(bucket=BUCKET, history=1, replicas=self.store.settings.replicas)
                )
        return self._kv

    async def record(self, webhook: WebhookState, outcome: str, error: str | None) -> None:
        """After a delivery ended (``succeeded`` or ``failed``)."""
        key, epoch = webhook.webhook_id, webhook.enabled_since_seq
        kv = await self._bucket()
        for _ in range(20):
            try:
                entry = await kv.get(key)
                value, revision = json.loads(entry.value or b"{}"), entry.revision
            except KeyNotFoundError:
                value, revision = {}, None
            stored_epoch = value.get("epoch")
            if isinstance(stored_epoch, int) and stored_epoch > epoch:
                return  # re-enabled since this instance last looked: its outcome is of before
            streak = value.get("failures", 0) if stored_epoch == epoch else 0
            if outcome == "succeeded" and streak == 0 and value.get("epoch") == epoch:
                return  # no streak to end: a read, no write, for the common case
            streak = 0 if outcome == "succeeded" else streak + 1
            data = json.dumps({"epoch": epoch, "failures": streak}).encode()
            try:
                if revision is None:
                    await kv.create(key, data)
                else:
                    await kv.update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            break
        else:
            return
        if streak >= self.disable_after:
            last = error or "no answer"
            await self._disable(webhook, f"{streak} deliveries in a row failed (last: {last})")

    async def _disable(self, webhook: WebhookState, reason: str) -> None:
        for _ in range(5):
            state = fold_webhook(
                webhook.webhook_id, await self.store.load(webhook.project, "webhook", webhook.webhook_id)
            )
            if not state.exists or not state.enabled or state.enabled_since_seq != webhook.enabled_since_seq:
                return
            event = make_event(
                WebhookDisabled(reason=reason[:500], by="notifier"),
                project=state.project,
                aggregate_id=state.webhook_id,
                event_id=new_id("evt"),
            )
            try:
                await self.store.append(event, expected_seq=state.version)
            except ConcurrencyConflict:
                continue
            log.warning("webhook %s disabled: %s", state.webhook_id, reason)
            return
