"""A local stand-in for Ironclad's public REST API v1 and its signed webhooks.

The product's httpx client talks to it as to Ironclad (``{url}/public/api/v1``). ``POST
/_sandbox/workflows/{id}/sign`` plays the counterparty signer; the workflow completes and its
events are delivered, signed with the emulator's own RSA key, to the subscribed webhook.
"""

from sandbox.ironclad.app import create_app

__all__ = ["create_app"]
