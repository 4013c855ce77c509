"""Incoming triggers: secret URLs that start runs."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
HeaderName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+\Z")]
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=512)]
DeploymentId = Annotated[str, msgspec.Meta(pattern=r"^dep_[0-9a-z]{26}\Z")]


class TriggerSignature(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Require ``sha256=<hex HMAC-SHA256(secret, body)>`` in ``header`` (GitHub's scheme);
    without ``secret`` one is generated and shown once."""

    header: HeaderName = "X-Hub-Signature-256"
    secret: Secret | None = None


class TriggerCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    #: Pin runs to this deployment; default: the project's current one when the request arrives.
    deployment: DeploymentId | None = None
    environment: Annotated[str, msgspec.Meta(max_length=64)] = "production"
    #: Build the run input from the body: ``{"field": "$.path.in.body", "fixed": 1}``.
    template: dict[str, Any] | None = None
    signature: TriggerSignature | None = None


class Trigger(msgspec.Struct, kw_only=True):
    id: str
    project: str
    name: str
    deployment_id: str | None
    environment: str
    template: dict[str, Any] | None
    signature_header: str | None
    created_at: str
    revoked: bool
    #: Only in the answer that creates the trigger: the secret URL path (POST JSON to it), its
    #: token, and a generated signature secret.
    url: str | None = None
    token: str | None = None
    signature_secret: str | None = None


class TriggerList(msgspec.Struct, kw_only=True):
    triggers: list[Trigger]


#: ``POST /webhooks/runs/{token}``: any JSON object (a CI system's or a form's payload): the run's
#: input as is, or what the trigger's template takes from it. No body is an empty object.
TriggerInput = dict[str, Any]


class TriggerFired(msgspec.Struct, kw_only=True):
    """``status`` is ``running`` when the run started within the wait, else ``pending`` (or the
    run's final status if it was that quick)."""

    run_id: str
    status: str
    deployment_id: str
    #: The version the run runs (``ver_…``, the same version as ``deployment_id``) and its number.
    version_id: str
    version_number: int
    events_url: str
