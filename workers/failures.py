"""Activity failures an operator can read in the Web UI.

An integration raises a classified ``ApplicationError`` (type, one-sentence message, details such
as the vendor's status and code) ``from`` the SDK exception it caught. Temporal would send that
cause along, with its own message and stack trace: for an HTTP client error that message holds the
whole response, headers included, and the failure then outgrows what the server keeps for a
pending activity, which the Web UI shows as "Failure exceeds size limit." instead of the vendor's
answer. This interceptor logs the cause in full on the worker and sends the classified error
without it.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor


class _WithoutVendorCause(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except ApplicationError as err:
            cause = err.__cause__
            if cause is None or isinstance(cause, FailureError):
                raise
            activity.logger.warning(
                "%s: %s (vendor exception: %s)", err.type, err.message, cause, exc_info=cause
            )
            raise err.with_traceback(err.__traceback__) from None


class CompactFailures(Interceptor):
    """Worker interceptor: classified activity failures leave without their SDK cause."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _WithoutVendorCause(next)
