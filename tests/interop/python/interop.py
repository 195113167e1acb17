"""Interop peer for the AAuth Rust workspace: the Python `aauth` and `aauth-signing`
packages, run by the Rust integration test tests/it/interop_python.rs (and so by
`cargo xtask ci` and .ci/run).

    .venv/bin/python interop.py MODE < request.json > answer.json

Every answer is one JSON object: {"versions": {"aauth", "aauth-signing"}, ...}. A case
that fails is reported with ok: false, the exception's message and its error code, and the
run goes on; only a malformed request or an unknown mode fails the process.

Keys travel as JWKs: public ones in `issuers` (what the peer's `jwks_fetcher` returns),
private ones (`private_jwk`, with `d`) where the peer must sign. `issuers` is a list of
{iss, dwk, jwks}; the fetcher answers by (iss, dwk) and records every call in `fetched`.

Modes (each request has the keys named; see the Rust test for the exact shapes):

  sign                {issuers, cases: [{name, method, url, headers, body, private_jwk,
                        jwt | agent_token: {private_jwk, kid, iss, sub, ps?},
                        role?, components?}]}
      The peer's agent (AgentRequestSigner) signs; answers the request headers, the agent
      token used, and the signature base the peer's verifier would build for it.
  verify              {issuers, cases: [{name, method, url, headers, body,
                        resource?: {resource_id, authorities, trusted, require}}]}
      The peer verifies: verify_signature, or RequestVerifier.verify_request when
      `resource` is given. Answers ok, error, error_code, and the peer's signature base.
  base                {cases: [{name, method, url, headers, body, signature_key,
                        components, created}]}
      The peer's signature base for the message (build_signature_params and
      build_signature_base).
  tokens-verify       {issuers, tokens: [{name, kind, token, expected_aud?, presented_token?,
                        request_signing_jwk?, expected_ps?, expected_agent_jkt?}]}
  tokens-mint         {issuers, requests: [{name, kind, private_jwk, kwargs}]}
      kind: agent | person | auth | resource, calling create_<kind>_token(**kwargs) with the
      key from private_jwk (and, for resource, the jwks_fetcher).
  metadata-make       {documents: [{name, kind, kwargs}]}
      kind: agent | person | access | resource, calling the peer's generate_* function.
  metadata-check      {documents: [{name, kind, issuer, json}]}
      The peer's metadata validation (validate_metadata, with the members its fetch
      functions require for that kind) over the document as served.
  revocation-sign     {requests: [{name, endpoint, jti, exp, private_jwk, issuer, kid, dwk}]}
  revocation-receive  {issuers, resource, allowed_issuers, requests: [{name, method, url,
                        headers, body}]}
      The peer's RevocationManager.handle_request, as a resource's revocation endpoint.
"""

import asyncio
import base64
import importlib.metadata
import json
import sys
from urllib.parse import urlparse

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import aauth
import aauth_signing
from aauth.metadata.common import validate_metadata
from aauth_signing.signature_base import build_signature_base, build_signature_params
from aauth_signing.signature_input import parse_signature_input

VERSIONS = {
    "aauth": importlib.metadata.version("aauth"),
    "aauth-signing": importlib.metadata.version("aauth-signing"),
}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def private_key(jwk):
    """A private key object from a private JWK (Ed25519 or P-256)."""
    d = b64url_decode(jwk["d"])
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return Ed25519PrivateKey.from_private_bytes(d)
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        return ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
    raise ValueError(f"unsupported private JWK: {jwk.get('kty')}/{jwk.get('crv')}")


class Fetcher:
    """The peer's jwks_fetcher(issuer, dwk, kid): JWKS by (issuer, dwk), calls recorded."""

    def __init__(self, issuers):
        self.table = {(i["iss"], i["dwk"]): i["jwks"] for i in issuers or []}
        self.fetched = []

    def __call__(self, issuer, dwk, kid):
        self.fetched.append([issuer, dwk, kid])
        return self.table.get((issuer, dwk))


def body_bytes(case):
    body = case.get("body")
    return None if body is None else body.encode("utf-8")


def failure(exc):
    return {
        "ok": False,
        "error": f"{type(exc).__name__}: {exc}",
        "error_code": getattr(exc, "error_code", None),
    }


def peer_base(method, url, headers, body):
    """The signature base the peer's verifier builds for a signed request: the covered
    components from its Signature-Input parser, @authority/@path/@query from the target
    URI as it parses it, @signature-params as the text after the label."""
    h = {k.lower(): v for k, v in headers.items()}
    components, _ = parse_signature_input(h["signature-input"])
    label, _, params = h["signature-input"].partition("=")
    u = urlparse(url)
    return build_signature_base(
        method=method,
        authority=u.netloc,
        path=u.path or "/",
        query=u.query or None,
        headers=headers,
        body=body,
        signature_key_header=h["signature-key"],
        covered_components=components,
        signature_params=params,
    )


def try_base(method, url, headers, body):
    try:
        return peer_base(method, url, headers, body)
    except Exception:  # the base is a diagnostic; the case's own result says what failed
        return None


def mode_sign(req):
    fetcher = Fetcher(req.get("issuers"))
    out = []
    for c in req["cases"]:
        try:
            jwt = c.get("jwt")
            minted = c.get("agent_token")
            key = private_key(c["private_jwk"])
            if minted:
                jwt = aauth.create_agent_token(
                    minted["iss"],
                    minted["sub"],
                    aauth.public_key_to_jwk(key.public_key()),
                    private_key(minted["private_jwk"]),
                    minted["kid"],
                    ps=minted.get("ps"),
                )
            headers = dict(c.get("headers") or {})
            body = body_bytes(c)
            signer = aauth.AgentRequestSigner(key, agent_token=jwt)
            headers.update(
                signer.sign_request(
                    c["method"],
                    c["url"],
                    headers,
                    body,
                    recipient_role=c.get("role", "resource"),
                    additional_signature_components=c.get("components"),
                )
            )
            out.append(
                {
                    "name": c["name"],
                    "ok": True,
                    "jwt": jwt,
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "base": try_base(c["method"], c["url"], headers, body),
                }
            )
        except Exception as exc:
            out.append({"name": c["name"], **failure(exc)})
    return {"cases": out, "fetched": fetcher.fetched}


def verify_one(c, fetcher):
    headers = c["headers"]
    h = {k.lower(): v for k, v in headers.items()}
    body = body_bytes(c)
    resource = c.get("resource")
    if resource:
        verifier = aauth.RequestVerifier(
            canonical_authorities=resource["authorities"],
            jwks_fetcher=fetcher,
            trusted_auth_servers=resource.get("trusted", []),
            resource_id=resource["resource_id"],
        )
        require = resource.get("require")
        result = verifier.verify_request(
            c["method"],
            c["url"],
            headers,
            body,
            require_identity=require == "agent",
            require_auth_token=require == "auth",
            require_person_token=require == "person",
        )
        ok = result.get("valid") is True
        return {
            "ok": ok,
            "error": result.get("error"),
            "error_code": result.get("error_code"),
            "token_type": result.get("token_type"),
            "user_sub": result.get("user_sub"),
            "agent_id": result.get("agent_id"),
            "scopes": result.get("scopes"),
        }
    ok = aauth_signing.verify_signature(
        c["method"],
        c["url"],
        headers,
        body,
        h.get("signature-input", ""),
        h.get("signature", ""),
        h.get("signature-key", ""),
        jwks_fetcher=fetcher,
    )
    return {"ok": ok is True, "error": None if ok else "not verified", "error_code": None}


def mode_verify(req):
    fetcher = Fetcher(req.get("issuers"))
    out = []
    for c in req["cases"]:
        try:
            result = verify_one(c, fetcher)
        except Exception as exc:
            result = failure(exc)
        base = try_base(c["method"], c["url"], c["headers"], body_bytes(c))
        out.append({"name": c["name"], **result, "base": base})
    return {"results": out, "fetched": fetcher.fetched}


def mode_base(req):
    out = []
    for c in req["cases"]:
        try:
            u = urlparse(c["url"])
            params = build_signature_params(c["components"], c["created"])
            base = build_signature_base(
                method=c["method"],
                authority=u.netloc,
                path=u.path or "/",
                query=u.query or None,
                headers=c.get("headers") or {},
                body=body_bytes(c),
                signature_key_header=c["signature_key"],
                covered_components=c["components"],
                signature_params=params,
            )
            out.append({"name": c["name"], "ok": True, "base": base})
        except Exception as exc:
            out.append({"name": c["name"], **failure(exc)})
    return {"cases": out}


def verify_token_of(t, fetcher):
    kind = t["kind"]
    if kind == "agent":
        return aauth.verify_agent_token(t["token"], fetcher, t.get("expected_aud"))
    if kind == "person":
        return aauth.verify_person_token(
            t["token"],
            fetcher,
            expected_aud=t.get("expected_aud"),
            request_signing_jwk=t.get("request_signing_jwk"),
        )
    if kind == "auth":
        return aauth.verify_token(
            t["token"],
            fetcher,
            expected_typ="aa-auth+jwt",
            expected_aud=t.get("expected_aud"),
            request_signing_jwk=t.get("request_signing_jwk"),
        )
    if kind == "resource":
        return aauth.verify_resource_token(
            t["token"],
            fetcher,
            presented_token=t["presented_token"],
            expected_aud=t.get("expected_aud"),
            expected_ps=t.get("expected_ps"),
            expected_agent_jkt=t.get("expected_agent_jkt"),
        )
    raise ValueError(f"unknown token kind {kind!r}")


def mode_tokens_verify(req):
    fetcher = Fetcher(req.get("issuers"))
    out = []
    for t in req["tokens"]:
        try:
            claims = verify_token_of(t, fetcher)
            header = aauth.parse_token_claims(t["token"])["header"]
            out.append({"name": t["name"], "ok": True, "claims": claims, "header": header})
        except Exception as exc:
            out.append({"name": t["name"], **failure(exc)})
    return {"results": out, "fetched": fetcher.fetched}


MINT = {
    "agent": aauth.create_agent_token,
    "person": aauth.create_person_token,
    "auth": aauth.create_auth_token,
    "resource": aauth.create_resource_token,
}


def mode_tokens_mint(req):
    fetcher = Fetcher(req.get("issuers"))
    out = []
    for r in req["requests"]:
        try:
            kwargs = dict(r["kwargs"])
            kwargs["private_key"] = private_key(r["private_jwk"])
            if r["kind"] == "resource":
                kwargs["jwks_fetcher"] = fetcher
            token = MINT[r["kind"]](**kwargs)
            out.append({"name": r["name"], "ok": True, "token": token})
        except Exception as exc:
            out.append({"name": r["name"], **failure(exc)})
    return {"tokens": out, "fetched": fetcher.fetched}


GENERATE = {
    "agent": aauth.generate_agent_metadata,
    "person": aauth.generate_ps_metadata,
    "access": aauth.generate_auth_metadata,
    "resource": aauth.generate_resource_metadata,
}

# The members the peer's own discovery requires of each document (fetch_metadata,
# fetch_ps_metadata, fetch_auth_metadata); a resource's jwks_uri is optional in -11.
REQUIRED = {
    "agent": ("jwks_uri",),
    "person": ("jwks_uri", "auth_token_endpoint", "person_token_endpoint"),
    "access": ("jwks_uri", "auth_token_endpoint"),
    "resource": (),
}


def mode_metadata_make(req):
    out = []
    for d in req["documents"]:
        try:
            doc = GENERATE[d["kind"]](**d["kwargs"])
            out.append({"name": d["name"], "ok": True, "json": json.dumps(doc)})
        except Exception as exc:
            out.append({"name": d["name"], **failure(exc)})
    return {"documents": out}


def mode_metadata_check(req):
    out = []
    for d in req["documents"]:
        try:
            doc = validate_metadata(json.loads(d["json"]), d["issuer"], REQUIRED[d["kind"]])
            out.append({"name": d["name"], "ok": True, "document": doc})
        except Exception as exc:
            result = failure(exc)
            details = getattr(exc, "details", None) or {}
            result["error_code"] = details.get("error_code", result["error_code"])
            out.append({"name": d["name"], **result})
    return {"results": out}


def mode_revocation_sign(req):
    out = []
    for r in req["requests"]:
        try:
            headers, body = aauth.sign_revocation_request(
                r["endpoint"],
                r["jti"],
                r["exp"],
                private_key(r["private_jwk"]),
                r["issuer"],
                r["kid"],
                r["dwk"],
            )
            out.append(
                {
                    "name": r["name"],
                    "ok": True,
                    "headers": {k.lower(): v for k, v in headers.items()},
                    "body": body.decode("utf-8"),
                }
            )
        except Exception as exc:
            out.append({"name": r["name"], **failure(exc)})
    return {"requests": out}


def mode_revocation_receive(req):
    fetcher = Fetcher(req.get("issuers"))
    out = []
    for r in req["requests"]:
        store = aauth.RevocationStore()
        sent = []

        async def send(recipient, jti, exp):
            sent.append([recipient, jti, exp])
            return {}

        manager = aauth.RevocationManager(
            req["resource"], "resource", store, send, req["allowed_issuers"]
        )
        try:
            resp = asyncio.run(
                manager.handle_request(
                    r["method"], r["url"], r["headers"], body_bytes(r), fetcher
                )
            )
            body = resp.body.decode("utf-8") if resp.body else ""
            revoked = sorted([iss, jti] for (iss, jti) in store.revoked)
            out.append(
                {
                    "name": r["name"],
                    "ok": resp.status_code == 200,
                    "status": resp.status_code,
                    "headers": {k.lower(): v for k, v in (resp.headers or {}).items()},
                    "body": body,
                    "revoked": revoked,
                }
            )
        except Exception as exc:
            out.append({"name": r["name"], **failure(exc)})
    return {"results": out, "fetched": fetcher.fetched}


MODES = {
    "sign": mode_sign,
    "verify": mode_verify,
    "base": mode_base,
    "tokens-verify": mode_tokens_verify,
    "tokens-mint": mode_tokens_mint,
    "metadata-make": mode_metadata_make,
    "metadata-check": mode_metadata_check,
    "revocation-sign": mode_revocation_sign,
    "revocation-receive": mode_revocation_receive,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.stderr.write(f"usage: interop.py {'|'.join(MODES)} < request.json\n")
        return 2
    answer = MODES[sys.argv[1]](json.load(sys.stdin))
    json.dump({"versions": VERSIONS, **answer}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
