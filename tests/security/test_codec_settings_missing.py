"""A CLI or API without the codec settings, reading a deal a worker encrypted (issue 24): one
sentence naming the settings to set, never the SDK's "Unknown payload encoding" traceback."""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from runtime.codec import CodecKeyError, build_data_converter
from runtime.settings import Settings
from service import deals
from tests.security.conftest import client_with
from tests.security.deals import LoggingVendors, a_fresh_quote, deal_worker, start_until_signature
from workflows.deal import workflow_id_for


async def test_reading_an_encrypted_deal_without_the_codec_names_the_missing_settings(
    env: WorkflowEnvironment,
) -> None:
    encrypting = Settings(_env_file=None, env="sandbox", codec_enabled=True)
    without_codec = Settings(_env_file=None, env="sandbox")
    client = client_with(env, build_data_converter(encrypting))
    reader = client_with(env, build_data_converter(without_codec))
    priced = await a_fresh_quote(env)
    task_queue = f"security-{uuid.uuid4()}"

    async with deal_worker(client, task_queue, LoggingVendors(encrypting).activities()):
        await start_until_signature(client, task_queue, priced)
        deal_id = workflow_id_for(priced.opportunity_id)
        assert (await deals.get_status(client, deal_id)).stage == "awaiting_signature"

        with pytest.raises(CodecKeyError) as raised:
            await deals.get_status(reader, deal_id)

    message = str(raised.value)
    assert "QTC_CODEC_ENABLED=true" in message and "QTC_CODEC_KEYS" in message
    assert "Unknown payload encoding" not in message
