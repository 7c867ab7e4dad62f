"""Publishes files to a Cloud Storage bucket with the official client (google-cloud-storage).

Imported only by the reconcile job when it publishes the inventory. Locally the client honours
``STORAGE_EMULATOR_HOST`` (the stack's gcp-storage-emulator): same code, no credentials.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from gatehouse.adapters.gapic import map_google_error


class BucketPublisher:
    def __init__(self, bucket: str, *, project: str | None = None) -> None:
        self.client = storage.Client(project=project)
        self.bucket = self.client.bucket(bucket)

    def publish(
        self, files: Mapping[str, tuple[bytes, str]], *, cache_control: str = "no-cache"
    ) -> list[str]:
        """Upload each ``name: (data, content type)``; returns the gs:// URLs. A versioned bucket keeps
        the previous nights' copies."""
        urls = []
        for name, (data, content_type) in files.items():
            blob = self.bucket.blob(name)
            blob.cache_control = cache_control  # the page changes every night: never served stale
            try:
                blob.upload_from_string(data, content_type=content_type, timeout=60)
            except gexc.GoogleAPICallError as exc:
                raise map_google_error(exc, f"upload gs://{self.bucket.name}/{name}") from None
            urls.append(f"gs://{self.bucket.name}/{name}")
        return urls
