"""Object stores for crew sources and artifacts: NATS object store by default (S3/MinIO pluggable
behind the same :class:`ObjectStore` protocol)."""

from ._base import ObjectNotFound, ObjectStore, ObjectStoreError
from ._nats import NatsObjectStore

__all__ = ["NatsObjectStore", "ObjectNotFound", "ObjectStore", "ObjectStoreError"]
