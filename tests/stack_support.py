"""Settings for a whole local stack on free ports, shared by the tests that start one."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings
from sandbox.stack import free_ports

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on right now (see ``sandbox.stack.free_ports``)."""
    return free_ports(1)[0]


def stack_settings(state_dir: Path, *, codec: bool = False) -> Settings:
    """Sandbox settings with every port free, so a stack can run beside a demo or another test."""
    temporal, ui, api, stripe, sf, ds, prov, hub, metrics, netsuite, cb, slack, smtp, ironclad = (
        free_ports(14)
    )
    return Settings(
        env="sandbox",
        catalog=ROOT / "catalog.toml",
        state_dir=state_dir,
        temporal_address=f"127.0.0.1:{temporal}",
        temporal_ui_port=ui,
        api_port=api,
        api_public_url=f"http://127.0.0.1:{api}",
        sandbox_stripe_port=stripe,
        sandbox_salesforce_port=sf,
        sandbox_docusign_port=ds,
        sandbox_provisioning_port=prov,
        sandbox_hubspot_port=hub,
        sandbox_netsuite_port=netsuite,
        sandbox_chargebee_port=cb,
        chargebee_api_base=f"http://127.0.0.1:{cb}",
        sandbox_ironclad_port=ironclad,
        stripe_api_base=f"http://127.0.0.1:{stripe}",
        salesforce_instance_url=f"https://127.0.0.1:{sf}",
        docusign_base_path=f"http://127.0.0.1:{ds}/restapi",
        docusign_oauth_host=f"127.0.0.1:{ds}",
        provisioning_url=f"http://127.0.0.1:{prov}/v1/provision",
        hubspot_api_base=f"http://127.0.0.1:{hub}",
        sandbox_slack_port=slack,
        sandbox_smtp_port=smtp,
        slack_api_url=f"http://127.0.0.1:{slack}/api/",
        smtp_port=smtp,
        notify_web_ui_url=f"http://127.0.0.1:{ui}",
        ironclad_base_url=f"http://127.0.0.1:{ironclad}",
        worker_metrics_port=metrics,
        codec_enabled=codec,
    )


def all_ports(settings: Settings) -> list[int]:
    return [
        int(settings.temporal_address.rsplit(":", 1)[1]),
        settings.temporal_ui_port,
        settings.api_port,
        settings.sandbox_stripe_port,
        settings.sandbox_salesforce_port,
        settings.sandbox_docusign_port,
        settings.sandbox_provisioning_port,
        settings.sandbox_hubspot_port,
        settings.sandbox_netsuite_port,
        settings.sandbox_slack_port,
        settings.sandbox_smtp_port,
        settings.sandbox_ironclad_port,
        settings.worker_metrics_port or 0,
        settings.sandbox_chargebee_port,
    ]
