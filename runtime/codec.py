"""Payload encryption: an AES-256-GCM ``PayloadCodec`` and the data converter built from settings.

A deal's history holds the customer's legal entity, billing email, address and the contract lines;
with the codec on, the Temporal server (and anyone who can read its database or its Web UI without
the codec endpoint) sees only ciphertext. Every payload is encrypted with the active key; a payload
names the key that encrypted it, so after a rotation the old keys stay configured and old histories
still decode.

Wire format: the metadata is ``encoding: binary/encrypted`` and ``encryption-key-id: <id>``; the
data is a random 96-bit nonce followed by the AES-GCM ciphertext of the serialized ``Payload``
proto. That is the layout of samples-python's ``encryption`` sample, except that the key id is bound
in as associated data, so a payload cannot be relabelled to another key (and the sample's own codec
server cannot decode ours: use ``starters/codec_api.py``).

What the codec does not cover: search attributes are indexed in clear by design (``QtcCustomer``
holds the legal name so a stuck deal is findable), and workflow ids hold the opportunity id. With
the codec on, failure messages and stack traces are moved into encoded attributes so that a vendor
error quoting an email address is encrypted too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from runtime.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
_NONCE_BYTES = 12


class CodecKeyError(ValueError):
    """A payload cannot be decrypted: its key id is unknown, or it fails authentication."""


class AesGcmCodec(PayloadCodec):
    """Encrypts every payload with the active key; decrypts with whichever key a payload names.

    Args:
        keys: Key material by key id, each exactly 32 bytes (AES-256). Keep retired keys here
            for as long as histories encrypted with them may be read.
        active_key_id: The key that encrypts new payloads.

    Raises:
        ValueError: ``active_key_id`` is not in ``keys`` or a key is not 32 bytes.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ValueError(f"the active key id {active_key_id!r} is not among the keys")
        for key_id, material in keys.items():
            if len(material) != 32:
                raise ValueError(f"codec key {key_id!r} is {len(material)} bytes, not 32")
        self._ciphers = {key_id: AESGCM(material) for key_id, material in keys.items()}
        self.active_key_id = active_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.active_key_id
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        # Payloads written before encryption was switched on stay readable.
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(
                f"payload was encrypted with key {key_id!r}, which is not configured "
                f"(known: {', '.join(sorted(self._ciphers))}); add it to QTC_CODEC_KEYS"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], key_id.encode())
            return Payload.FromString(plain)
        except (InvalidTag, ValueError, DecodeError) as err:
            raise CodecKeyError(
                f"payload encrypted with key {key_id!r} failed authentication: it was altered, "
                "or the key configured under that id is not the one that encrypted it"
            ) from err


def codec_from_settings(settings: Settings) -> AesGcmCodec:
    """The codec for the configured keys (the sandbox key in the sandbox when none are set).

    Raises:
        ValueError: No usable keys (settings validation normally catches this at start-up).
    """
    keys, active = settings.codec_key_set()
    return AesGcmCodec(keys, active)


def build_data_converter(settings: Settings) -> DataConverter:
    """The data converter every client and worker uses: pydantic JSON, encrypted when on."""
    if not settings.codec_on:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec_from_settings(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
