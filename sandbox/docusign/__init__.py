"""A local stand-in for DocuSign eSignature REST v2.1 and DocuSign Connect.

The real ``docusign-esign`` SDK talks to it over HTTP (``ApiClient(host=f"{url}/restapi")``).
``POST /_sandbox/envelopes/{id}/sign`` plays the signer: the envelope completes and a Connect
``envelope-completed`` event (JSON SIM, HMAC-signed) is delivered in the background, with retries.
"""

from sandbox.docusign.app import create_app

__all__ = ["create_app"]
