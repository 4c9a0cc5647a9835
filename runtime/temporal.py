"""The one place that builds a Temporal client from settings (worker, API, CLI, demo)."""

from __future__ import annotations

from temporalio.client import Client

from runtime.codec import build_data_converter
from runtime.settings import Settings


async def connect(settings: Settings) -> Client:
    """Connect to the Temporal frontend named by the settings, with the pydantic data converter
    (payloads AES-GCM encrypted when ``settings.codec_on``; see ``runtime/codec.py``).

    Temporal Cloud: set ``QTC_TEMPORAL_ADDRESS`` to the namespace endpoint,
    ``QTC_TEMPORAL_NAMESPACE`` and ``QTC_TEMPORAL_API_KEY`` (TLS is then implied).
    """
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=settings.temporal_tls or api_key is not None,
        data_converter=build_data_converter(settings),
    )
