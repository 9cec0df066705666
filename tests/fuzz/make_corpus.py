#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/ (run from anywhere; needs `openssl`).

fuzz_token_verifier inputs start with a mode byte: '0' token, '1' claims JSON, '2' JWKS
(see fuzz_token_verifier.cc). fuzz_channel_pattern inputs are "<pattern>\\n<channel>".
The JWKS seeds hold throwaway public keys generated here; no private key is kept.
fuzz_ws_decoder inputs are [limit selector][chunking seed][client frames] and fuzz_ws_session
inputs [flags][split][client frames] (see the targets' comments).

Usage: make_corpus.py [target...]   (no target: all of them; the token seeds get new keys)
"""
import base64, hashlib, hmac, json, pathlib, re, struct, subprocess, sys, tempfile

HERE = pathlib.Path(__file__).resolve().parent
SECRET = b"fuzz-secret-0123456789abcdef-0123456789"  # must match fuzz_token_verifier.cc
EXP = 1_800_003_600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def js(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def hs256(header: dict, payload: dict) -> str:
    signing_input = b64(js(header)) + "." + b64(js(payload))
    mac = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def openssl(*args: str, data: bytes = b"") -> str:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout.decode()


def public_jwks() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        rsa, ec = f"{tmp}/rsa.pem", f"{tmp}/ec.pem"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
        modulus = openssl("rsa", "-in", rsa, "-noout", "-modulus").strip().split("=")[1]
        text = openssl("ec", "-in", ec, "-noout", "-text")
    pub = re.search(r"pub:\s*([0-9a-f:\s]+)ASN1", text).group(1)
    point = bytes.fromhex(re.sub(r"[^0-9a-f]", "", pub))
    keys = [
        {"kty": "RSA", "kid": "rsa1", "use": "sig", "n": b64(bytes.fromhex(modulus)), "e": "AQAB"},
        {"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:65])},
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
    ]
    return js({"keys": keys})


def ws_frame(first: int, payload: bytes, masked: bool = True, key: bytes = b"\x5a\xc3\x0f\x81") -> bytes:
    """A client frame: FIN/RSV/opcode byte as given, shortest length encoding."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n <= 0xFFFF:
        head = bytes([first, bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def ws_streams() -> dict:
    """Client byte streams covering every rule of the decoder and the session."""
    ping = b'{"type":"ping"}'
    grin = "\U0001F600".encode()
    close = lambda code, reason=b"": ws_frame(0x88, struct.pack(">H", code) + reason)
    text = b'{"type":"ping","pad":"' + grin + b'"}'
    cut = text.index(grin) + 2
    return {
        "ping_json": ws_frame(0x81, ping),
        "ping_pong_close": ws_frame(0x89, b"hi") + ws_frame(0x8A, b"") + close(1000, b"bye"),
        "fragmented_ping_between": ws_frame(0x01, text[:cut]) + ws_frame(0x89, b"")
        + ws_frame(0x80, text[cut:]),
        "subscribe_message": ws_frame(0x81, b'{"type":"subscribe","channel":"circles/a"}')
        + ws_frame(0x81, b'{"type":"hello","channel":"circles/a"}')
        + ws_frame(0x81, b'{"type":"unsubscribe","channel":"circles/a"}'),
        "binary_16bit": ws_frame(0x82, bytes(range(256)) * 2),
        "text_64bit": ws_frame(0x81, b'{"type":"ping","pad":"' + b"x" * 65510 + b'"}'),
        "invalid_utf8": ws_frame(0x81, b'{"pad":"\xed\xa0\x80"}'),
        "invalid_utf8_fragment": ws_frame(0x01, b"\xce\xba\xf4\x90") + ws_frame(0x80, b"x"),
        "truncated_code_point": ws_frame(0x81, b"ok\xf0\x9f"),
        "close_bad_code": close(1005),
        "close_bad_reason": close(1000, b"\xff"),
        "close_one_byte": ws_frame(0x88, b"\x03"),
        "close_then_data": close(4000) + ws_frame(0x81, ping),
        "unmasked": ws_frame(0x81, ping, masked=False),
        "rsv1": ws_frame(0xC1, ping),
        "reserved_opcode": ws_frame(0x83, b""),
        "ping_126": ws_frame(0x89, b"p" * 126),
        "continuation_first": ws_frame(0x80, b"x"),
        "text_in_text": ws_frame(0x01, b"a") + ws_frame(0x81, b"b"),
        "too_big_header": ws_frame(0x82, b"\0" * 70000)[:14],
        "one_byte_fragments": ws_frame(0x01, ping[:1])
        + b"".join(ws_frame(0x00, ping[i:i + 1]) for i in range(1, len(ping) - 1))
        + ws_frame(0x80, ping[-1:]),
        "burst_pings": b"".join(ws_frame(0x89, str(i).encode()) for i in range(50)),
    }


def ws_corpora() -> None:
    streams = ws_streams()
    out = HERE / "corpus" / "fuzz_ws_decoder"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in streams.items():
        # limit 1+255*64 bytes (0x11 for the small-limit seeds), chunking seed 7 (or 0: random).
        limit = 0x11 if name in ("binary_16bit", "text_64bit") else 0xFF
        (out / name).write_bytes(bytes([limit, 7 if len(data) % 2 else 0]) + data[:16000])
    out = HERE / "corpus" / "fuzz_ws_session"
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, data) in enumerate(streams.items()):
        if len(data) > 16000:
            data = data[:16000]
        flags = [0, 1, 4, 8, 2, 5, 12, 15][i % 8]
        (out / name).write_bytes(bytes([flags, 9]) + data)


def main() -> None:
    targets = set(sys.argv[1:])
    if targets and not targets <= {"fuzz_token_verifier", "fuzz_channel_pattern", "fuzz_ws_decoder",
                                    "fuzz_ws_session"}:
        sys.exit(f"unknown target in {sorted(targets)}")
    if not targets or targets & {"fuzz_ws_decoder", "fuzz_ws_session"}:
        ws_corpora()
    if targets and not targets & {"fuzz_token_verifier", "fuzz_channel_pattern"}:
        return
    good = {"sub": "alice", "exp": EXP, "iss": "fuzz-iss", "aud": "fuzz-aud",
            "channels": ["circles/*", "agents/7"], "publish": "circles/dev workspace/42/files"}
    tokens = {
        "valid_hs256": hs256({"alg": "HS256", "typ": "JWT"}, good),
        "valid_hs256_kid": hs256({"alg": "HS256", "kid": "x"}, dict(good, nbf=EXP - 7200)),
        "expired": hs256({"alg": "HS256"}, dict(good, exp=1_700_000_000)),
        "alg_none": b64(js({"alg": "none"})) + "." + b64(js(good)) + ".",
        "rs256_kid": b64(js({"alg": "RS256", "kid": "rsa1"})) + "." + b64(js(good)) + "." + b64(b"\1" * 256),
        "es256": b64(js({"alg": "ES256"})) + "." + b64(js(good)) + "." + b64(b"\2" * 64),
        "crit": hs256({"alg": "HS256", "crit": ["b64"]}, good),
        "dots": "a.b.c",
    }
    claims = {
        "full": good,
        "aud_array": dict(good, aud=["other", "fuzz-aud"], nbf=1_799_999_990),
        "float_exp": dict(good, exp=1.8e9 + 0.5),
        "no_exp": {"sub": "alice", "iss": "fuzz-iss", "aud": "fuzz-aud"},
        "bad_pattern": dict(good, channels=["circles/d*"]),
    }
    out = HERE / "corpus" / "fuzz_token_verifier"
    out.mkdir(parents=True, exist_ok=True)
    for name, token in tokens.items():
        (out / f"token_{name}").write_bytes(b"0" + token.encode())
    for name, payload in claims.items():
        (out / f"claims_{name}").write_bytes(b"1" + js(payload))
    (out / "jwks_rsa_ec_oct").write_bytes(b"2" + public_jwks())
    (out / "jwks_empty").write_bytes(b'2{"keys":[]}')

    patterns = [("*", "circles/dev"), ("circles/*", "circles/a/b"), ("circles/*", "circlesx/a"),
                ("circles/dev", "circles/dev"), ("workspace/42/files", "workspace/42"),
                ("circles/d*", "circles/dev"), ("", ""), ("a:b@c.d-e_f/*", "a:b@c.d-e_f/x")]
    out = HERE / "corpus" / "fuzz_channel_pattern"
    out.mkdir(parents=True, exist_ok=True)
    for i, (pattern, channel) in enumerate(patterns):
        (out / f"seed_{i}").write_bytes(f"{pattern}\n{channel}".encode())


if __name__ == "__main__":
    main()
