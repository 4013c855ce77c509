"""Who may do what: NATS credentials for the platform's services and for outside consumers.

Public contract: the trust chain (:class:`Trust`, :func:`load_or_create`, :func:`write_material`,
:class:`Issuer`), the permission sets (:func:`service_permissions`, :func:`consumer_permissions`,
:class:`Names`), credentials files (:func:`parse_creds`, :func:`inbox_prefix_of`) and outside
consumers (:mod:`crewyard.auth.consumers`).
"""

from ._jwt import CredentialsError, claims_of, format_creds, parse_creds, public_key
from ._permissions import (
    SERVICES,
    Names,
    Permissions,
    admin_permissions,
    consumer_permissions,
    service_permissions,
)
from ._trust import Issuer, Trust, TrustError, load_issuer, load_or_create, write_material

__all__ = [
    "SERVICES",
    "CredentialsError",
    "Issuer",
    "Names",
    "Permissions",
    "Trust",
    "TrustError",
    "admin_permissions",
    "claims_of",
    "consumer_permissions",
    "format_creds",
    "inbox_prefix_of",
    "load_issuer",
    "load_or_create",
    "parse_creds",
    "public_key",
    "service_permissions",
    "write_material",
]


def inbox_prefix_of(creds_text: str) -> str | None:
    """The inbox prefix a user's permissions let it receive replies on (``_INBOX_<user>``)."""
    jwt, _ = parse_creds(creds_text)
    allowed = claims_of(jwt).get("nats", {}).get("sub", {}).get("allow", [])
    for subject in allowed:
        if isinstance(subject, str) and subject.startswith("_INBOX") and subject.endswith(".>"):
            return subject[:-2]
    return None
