"""The one place that builds a Temporal client from settings (worker, API, CLI, demo)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from runtime.codec import build_data_converter
from runtime.settings import Settings
from runtime.tracing import tracing_interceptors


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's metrics, and those the deal workflow records
    through its metric meter, as Prometheus text at ``http://<bind_address>/metrics``."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind_address, durations_as_seconds=True)
        )
    )


def tls_for(settings: Settings, api_key: str | None) -> bool | TLSConfig:
    """TLS for the frontend: mTLS with a client certificate (self-hosted or Temporal Cloud's
    certificate auth), plain TLS with an API key or ``QTC_TEMPORAL_TLS``, else none."""
    cert, key, ca = settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca
    if cert is None and key is None and ca is None:
        return settings.temporal_tls or api_key is not None
    if (cert is None) != (key is None):
        raise ValueError("set both QTC_TEMPORAL_TLS_CERT and QTC_TEMPORAL_TLS_KEY, or neither")
    return TLSConfig(
        client_cert=cert.read_bytes() if cert else None,
        client_private_key=key.read_bytes() if key else None,
        server_root_ca_cert=ca.read_bytes() if ca else None,
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to the Temporal frontend named by the settings, with the pydantic data converter
    (payloads AES-GCM encrypted when ``settings.codec_on``; see ``runtime/codec.py``).

    Temporal Cloud: ``QTC_TEMPORAL_ADDRESS`` (the namespace endpoint), ``QTC_TEMPORAL_NAMESPACE``
    and either ``QTC_TEMPORAL_API_KEY`` (TLS is then implied) or a client certificate
    (``QTC_TEMPORAL_TLS_CERT`` / ``QTC_TEMPORAL_TLS_KEY``, optionally ``QTC_TEMPORAL_TLS_CA``).
    With ``QTC_TEMPORAL_PROFILE`` the connection comes from Temporal's environment configuration
    instead (``temporal.toml`` and the ``TEMPORAL_*`` variables, as the Temporal CLI reads them).

    Raises:
        ValueError: The TLS settings are incomplete, or a certificate file cannot be read.
    """
    converter = build_data_converter(settings)
    if settings.temporal_profile is not None:
        config = ClientConfigProfile.load(
            profile=settings.temporal_profile
        ).to_client_connect_config()
        return await Client.connect(
            **config,
            data_converter=converter,
            runtime=runtime,
            interceptors=tracing_interceptors(),
        )
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        tls = tls_for(settings, api_key)
    except OSError as exc:
        raise ValueError(f"cannot read a Temporal TLS file: {exc}") from exc
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls,
        data_converter=converter,
        runtime=runtime,
        interceptors=tracing_interceptors(),
    )
