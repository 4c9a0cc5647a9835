"""Local Stripe emulator for the sandbox and the tests; see ``sandbox.stripe.app``."""
