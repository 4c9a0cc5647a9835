"""SMTP connections for notifications (stdlib smtplib): one per send, short-lived."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable

from runtime.settings import Settings

SmtpFactory = Callable[[], smtplib.SMTP]


def build_smtp_factory(settings: Settings) -> SmtpFactory:
    """Opens an authenticated SMTP connection (STARTTLS when ``QTC_SMTP_STARTTLS``)."""

    def connect() -> smtplib.SMTP:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s)
        try:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        except BaseException:
            smtp.close()
            raise
        return smtp

    return connect
