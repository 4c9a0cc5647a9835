"""The deal's search attributes as Temporal's typed keys, built once from the names in
``qtc.ports``: the workflow upserts them, the service layer sets them at start and filters lists
by them, the worker registers them on the namespace."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

from qtc.ports import (
    SA_ARR,
    SA_BLOCKED_STEP,
    SA_CURRENCY,
    SA_CUSTOMER,
    SA_ERROR_TYPE,
    SA_PHASE,
    SA_STAGE,
)

STAGE_KEY = SearchAttributeKey.for_keyword(SA_STAGE)
CUSTOMER_KEY = SearchAttributeKey.for_text(SA_CUSTOMER)
ARR_KEY = SearchAttributeKey.for_float(SA_ARR)
PHASE_KEY = SearchAttributeKey.for_int(SA_PHASE)
CURRENCY_KEY = SearchAttributeKey.for_keyword(SA_CURRENCY)
BLOCKED_STEP_KEY = SearchAttributeKey.for_keyword(SA_BLOCKED_STEP)
ERROR_TYPE_KEY = SearchAttributeKey.for_keyword(SA_ERROR_TYPE)
SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = [
    STAGE_KEY,
    CUSTOMER_KEY,
    ARR_KEY,
    PHASE_KEY,
    CURRENCY_KEY,
    BLOCKED_STEP_KEY,
    ERROR_TYPE_KEY,
]
"""Every custom search attribute the workflow upserts; register them on the server first."""

# Every supported currency (usd, eur, gbp) has two decimals; QtcArr is for searching and sorting
# in the Web UI, never for arithmetic, so a float in major units is what a person expects there.
MINOR_PER_MAJOR = 100
