"""WXBizMsgCrypt against public vectors (official samples, wechatpy, a go-workwx capture)."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from wecom.crypto import BLOCK, CryptoError, WeComCrypto, signature

VECTORS = json.loads((Path(__file__).parent / "wecom-crypto-vectors.json").read_text("utf-8"))
SETS = {s["name"]: s for s in VECTORS["sets"]}
GET_SETS = [s for s in VECTORS["sets"] if "url_verification" in s]
POST_SETS = [s for s in VECTORS["sets"] if "event" in s]

V1 = SETS["V1"]
V1_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
    "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n"
    "<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n"
    "<CreateTime>1411525903</CreateTime>\n</xml>"
)
V1_REPLY_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGs"
    "L8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSj"
    "PUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJv"
    "FurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFY"
    "FMNMpatF9XiKzHo3"
)


def crypto_for(s: dict, **override) -> WeComCrypto:
    args = {"token": s["token"], "encoding_aes_key": s["encoding_aes_key"], "receive_id": s["receive_id"]}
    args.update(override)
    return WeComCrypto(**args)


@pytest.mark.parametrize("s", GET_SETS, ids=lambda s: s["name"])
def test_url_verification_vectors(s):
    v = s["url_verification"]
    got = crypto_for(s).verify_url(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"])
    assert got == v["plaintext"]


@pytest.mark.parametrize("s", POST_SETS, ids=lambda s: s["name"])
def test_event_vectors(s):
    v = s["event"]
    got = crypto_for(s).decrypt_message(v["msg_signature"], v["timestamp"], v["nonce"], v["encrypt"])
    assert got == v["plaintext"]


def test_v1_deterministic_encrypt():
    crypto = crypto_for(V1)
    encrypted = crypto.encrypt(V1_REPLY, random_prefix=b"1234567890123456")
    assert encrypted == V1_REPLY_ENCRYPT
    assert signature(V1["token"], "1411525903", "461056294", encrypted) == "407518b7649e86ef23978113f92d27afa9296533"


def test_round_trip_chinese_text():
    crypto = crypto_for(SETS["V2"])
    message = "<xml><Content><![CDATA[邻里优惠券：满100减20 🎉]]></Content></xml>"
    encrypted, sig = crypto.encrypt_message(message, "1700000000", "42")
    assert crypto.decrypt_message(sig, "1700000000", "42", encrypted) == message


def test_padding_is_to_32_bytes_with_a_full_block_when_aligned():
    crypto = crypto_for(V1)
    # 16 prefix + 4 length + msg + 18 receive id = 64 when msg is 26 bytes: a whole extra block.
    raw = base64.b64decode(crypto.encrypt("x" * 26))
    assert len(raw) == 64 + BLOCK


def test_wrong_key_fails():
    other_key = SETS["V2"]["encoding_aes_key"]
    v = V1["url_verification"]
    with pytest.raises(CryptoError):
        crypto_for(V1, encoding_aes_key=other_key).decrypt(v["echostr"])


def test_wrong_receive_id_fails():
    v = V1["event"]
    with pytest.raises(CryptoError, match="receive id"):
        crypto_for(V1, receive_id="ww0000000000000000").decrypt(v["encrypt"])


def test_forged_signature_fails():
    v = V1["event"]
    with pytest.raises(CryptoError, match="signature"):
        crypto_for(V1).decrypt_message("0" * 40, v["timestamp"], v["nonce"], v["encrypt"])
    with pytest.raises(CryptoError, match="signature"):
        crypto_for(V1, token="654321").decrypt_message(v["msg_signature"], v["timestamp"], v["nonce"], v["encrypt"])


@pytest.mark.parametrize("bad", ["not base64!!", "", "AAAA", base64.b64encode(b"x" * 17).decode()])
def test_bad_base64_or_length_fails(bad):
    with pytest.raises(CryptoError):
        crypto_for(V1).decrypt(bad)


def test_bad_padding_fails():
    """A valid ciphertext whose last plaintext byte is not a 1..32 pad value."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    crypto = crypto_for(V1)
    plain = b"1234567890123456" + b"\x00" * 15 + b"\x00"  # 32 bytes ending in pad value 0
    enc = Cipher(algorithms.AES(crypto.key), modes.CBC(crypto.key[:16])).encryptor()
    bad = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
    with pytest.raises(CryptoError, match="padding"):
        crypto.decrypt(bad)


@pytest.mark.parametrize("key", ["short", "!" * 43, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1a"])
def test_bad_encoding_aes_key_is_refused(key):
    with pytest.raises(CryptoError):
        WeComCrypto("t", key, "r")
