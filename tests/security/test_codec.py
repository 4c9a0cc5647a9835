"""The AES-GCM payload codec, its keys from settings, and the data converter built from them."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes

from runtime.codec import AesGcmCodec, CodecKeyError, build_data_converter
from runtime.settings import SANDBOX_CODEC_KEY_B64, SANDBOX_CODEC_KEY_ID, Settings

KEY_1 = os.urandom(32)
KEY_2 = os.urandom(32)
CUSTOMER_JSON = b'{"legal_name": "Acme Robotics, Inc.", "billing_email": "ap@acme.example"}'


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _payload(data: bytes = CUSTOMER_JSON) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def production(**overrides: Any) -> Settings:
    """Production settings with real-looking secrets, ignoring the environment and ``.env``."""
    values: dict[str, Any] = {
        "env": "production",
        "stripe_api_key": SecretStr("sk_live_" + os.urandom(8).hex()),
        "docusign_connect_secret": SecretStr(os.urandom(12).hex()),
        "salesforce_callout_secret": SecretStr(os.urandom(12).hex()),
        "provisioning_secret": SecretStr(os.urandom(12).hex()),
        "api_tokens": {os.urandom(12).hex(): {"person": "ops@corp.example", "role": "operator"}},
        "codec_keys": SecretStr(f'{{"k1": "{_b64(KEY_1)}"}}'),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def test_an_encrypted_payload_hides_the_customer_and_decodes_to_the_original() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, "k1")

    [encrypted] = await codec.encode([_payload()])
    [decoded] = await codec.decode([encrypted])

    assert encrypted.metadata["encoding"] == b"binary/encrypted"
    assert encrypted.metadata["encryption-key-id"] == b"k1"
    assert b"Acme" not in encrypted.SerializeToString()
    assert b"ap@acme.example" not in encrypted.SerializeToString()
    assert decoded == _payload()


async def test_the_same_payload_encrypts_differently_each_time() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, "k1")

    first, second = await codec.encode([_payload(), _payload()])

    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_after_rotation_old_payloads_still_decode_and_new_ones_use_the_new_key() -> None:
    before = AesGcmCodec({"k1": KEY_1}, "k1")
    [old] = await before.encode([_payload()])

    after = AesGcmCodec({"k1": KEY_1, "k2": KEY_2}, "k2")
    [new] = await after.encode([_payload()])

    assert new.metadata["encryption-key-id"] == b"k2"
    assert await after.decode([old, new]) == [_payload(), _payload()]


async def test_a_payload_under_an_unknown_key_id_fails_with_a_clear_error() -> None:
    [retired] = await AesGcmCodec({"k0": KEY_2}, "k0").encode([_payload()])

    with pytest.raises(CodecKeyError, match=r"key 'k0', which is not configured \(known: k1\)"):
        await AesGcmCodec({"k1": KEY_1}, "k1").decode([retired])


async def test_a_tampered_payload_is_refused_not_decoded_into_garbage() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, "k1")
    [encrypted] = await codec.encode([_payload()])
    flipped = bytearray(encrypted.data)
    flipped[-1] ^= 0x01
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(flipped))

    with pytest.raises(CodecKeyError, match="failed authentication"):
        await codec.decode([tampered])


async def test_a_payload_relabelled_to_another_key_id_is_refused() -> None:
    # Same key material under two ids: only the associated data (the key id) tells them apart.
    codec = AesGcmCodec({"k1": KEY_1, "k2": KEY_1}, "k1")
    [encrypted] = await codec.encode([_payload()])
    relabelled = Payload(
        metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"k2"},
        data=encrypted.data,
    )

    with pytest.raises(CodecKeyError):
        await codec.decode([relabelled])


async def test_truncated_ciphertext_is_refused() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, "k1")
    short = Payload(
        metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"k1"}, data=b"abc"
    )

    with pytest.raises(CodecKeyError):
        await codec.decode([short])


async def test_payloads_written_before_encryption_was_switched_on_pass_through() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, "k1")

    assert await codec.decode([_payload()]) == [_payload()]


def test_a_codec_without_its_active_key_or_with_a_short_key_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="active key id 'k2'"):
        AesGcmCodec({"k1": KEY_1}, "k2")
    with pytest.raises(ValueError, match="16 bytes"):
        AesGcmCodec({"k1": KEY_1[:16]}, "k1")


# --- settings ---------------------------------------------------------------------------------


def test_encryption_is_off_in_the_sandbox_and_on_outside_it_by_default() -> None:
    assert Settings(_env_file=None).codec_on is False
    assert production().codec_on is True


def test_production_with_encryption_on_and_no_keys_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="QTC_CODEC_KEYS is not set"):
        production(codec_keys=None)


def test_production_may_switch_encryption_off_explicitly() -> None:
    settings = production(codec_keys=None, codec_enabled=False)

    assert build_data_converter(settings) is pydantic_data_converter


def test_the_published_sandbox_key_is_refused_outside_the_sandbox() -> None:
    reused = SecretStr(f'{{"prod-1": "{SANDBOX_CODEC_KEY_B64}"}}')

    with pytest.raises(ValidationError, match="sandbox codec key is refused"):
        production(codec_keys=reused)


def test_the_sandbox_with_encryption_on_uses_the_documented_sandbox_key() -> None:
    settings = Settings(_env_file=None, codec_enabled=True)

    keys, active = settings.codec_key_set()

    assert active == SANDBOX_CODEC_KEY_ID == "sandbox-key-1"
    assert keys[active] == b"qtc-sandbox-codec-key-not-secret"


@pytest.mark.parametrize(
    ("keys", "active", "message"),
    [
        ("not json", None, "not JSON"),
        ("[]", None, "non-empty JSON object"),
        ('{"k1": "%%%%"}', None, "'k1' is not valid base64"),
        ('{"k1": "' + _b64(b"short") + '"}', None, "'k1' is 5 bytes"),
        ('{"k 1": "' + _b64(KEY_1) + '"}', None, "key id 'k 1'"),
        ('{"k1": "' + _b64(KEY_1) + '", "k2": "' + _b64(KEY_2) + '"}', None, "several keys"),
        ('{"k1": "' + _b64(KEY_1) + '"}', "k9", "'k9' is not a key id"),
    ],
)
def test_malformed_codec_keys_are_a_start_up_error_that_never_shows_the_key(
    keys: str, active: str | None, message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        production(codec_keys=SecretStr(keys), codec_active_key_id=active)

    assert _b64(KEY_1) not in str(caught.value)
    assert _b64(KEY_2) not in str(caught.value)


async def test_the_data_converter_encrypts_payloads_and_failure_messages_when_on() -> None:
    settings = production(
        codec_keys=SecretStr(f'{{"k1": "{_b64(KEY_1)}", "k2": "{_b64(KEY_2)}"}}'),
        codec_active_key_id="k2",
    )

    converter = build_data_converter(settings)
    [payload] = await converter.encode(["Acme Robotics, Inc."])

    assert payload.metadata["encryption-key-id"] == b"k2"
    assert b"Acme" not in payload.data
    assert await converter.decode([payload]) == ["Acme Robotics, Inc."]
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class


def test_every_secret_setting_including_codec_keys_is_listed_for_redaction() -> None:
    settings = production(docusign_connect_secrets_extra=[SecretStr("old-connect-secret-1")])

    secrets = settings.secret_values()

    assert settings.stripe_api_key.get_secret_value() in secrets
    assert settings.provisioning_secret.get_secret_value() in secrets
    assert "old-connect-secret-1" in secrets
    assert next(iter(settings.api_tokens)) in secrets
    assert _b64(KEY_1) in secrets
