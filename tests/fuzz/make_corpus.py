#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/ (run from anywhere; needs `openssl`).

fuzz_token_verifier inputs start with a mode byte: '0' token, '1' claims JSON, '2' JWKS
(see fuzz_token_verifier.cc). fuzz_channel_pattern inputs are "<pattern>\\n<channel>".
The JWKS seeds hold throwaway public keys generated here; no private key is kept.
"""
import base64, hashlib, hmac, json, pathlib, re, subprocess, tempfile

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


def main() -> None:
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
