// Interop peer for the AAuth Rust workspace, run by the Rust integration test
// tests/it/interop.rs (and so by `cargo xtask ci` and .ci/run).
//
//   node interop.mjs sign   < {"cases":[{name, method, url, headers, body, private_jwk, jwt, components?}]}
//   node interop.mjs verify < {"cases":[{name, method, authority, path, query, headers, body, require_content_digest}]}
//   node interop.mjs parse-signature-error < {"cases":[{name, header}]}
//
// Both write one JSON document to stdout: {"library_version", "cases"|"results": [...]}.
// A case that fails is reported with ok:false and the library's message; the run goes on.
// The library reads the wall clock itself (created, exp), so the Rust side signs and
// verifies at the current time.

import { readFileSync } from 'node:fs';
import { fetch as signedFetch, parseSignatureError, verify } from '@hellocoop/httpsig';

const libraryVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@hellocoop/httpsig/package.json', import.meta.url), 'utf8'),
).version;

async function sign(c) {
  const { headers } = await signedFetch(c.url, {
    method: c.method,
    headers: c.headers ?? {},
    body: c.body ?? undefined,
    signingKey: c.private_jwk,
    signatureKey: { type: 'jwt', jwt: c.jwt },
    components: c.components ?? undefined,
    contentDigest: 'auto',
    dryRun: true,
  });
  const out = {};
  headers.forEach((value, name) => { out[name.toLowerCase()] = value; });
  return { name: c.name, method: c.method, url: c.url, body: c.body ?? null, headers: out };
}

async function check(c) {
  const result = await verify(
    {
      method: c.method,
      authority: c.authority,
      path: c.path,
      query: c.query ?? undefined,
      headers: c.headers,
      body: c.body ?? undefined,
    },
    { requireContentDigest: Boolean(c.require_content_digest) },
  );
  return {
    name: c.name,
    ok: result.verified === true,
    error: result.verified ? null : (result.signatureError?.error ?? result.error ?? 'not verified'),
    label: result.label ?? null,
    thumbprint: result.thumbprint ?? null,
  };
}

// What an agent built on the library learns from a Signature-Error field a server sent.
function readSignatureError(c) {
  const parsed = parseSignatureError(c.header);
  return { name: c.name, ok: true, error: parsed.error, required_input: parsed.required_input ?? null };
}

const mode = process.argv[2];
const input = JSON.parse(readFileSync(0, 'utf8'));
if (mode === 'sign') {
  const cases = [];
  for (const c of input.cases) {
    try {
      cases.push({ ok: true, ...(await sign(c)) });
    } catch (e) {
      cases.push({ name: c.name, ok: false, error: String(e?.message ?? e) });
    }
  }
  process.stdout.write(JSON.stringify({ library_version: libraryVersion, cases }));
} else if (mode === 'verify') {
  const results = [];
  for (const c of input.cases) {
    try {
      results.push(await check(c));
    } catch (e) {
      results.push({ name: c.name, ok: false, error: String(e?.message ?? e) });
    }
  }
  process.stdout.write(JSON.stringify({ library_version: libraryVersion, results }));
} else if (mode === 'parse-signature-error') {
  const results = input.cases.map((c) => {
    try {
      return readSignatureError(c);
    } catch (e) {
      return { name: c.name, ok: false, error: String(e?.message ?? e) };
    }
  });
  process.stdout.write(JSON.stringify({ library_version: libraryVersion, results }));
} else {
  process.stderr.write('usage: node interop.mjs sign|verify|parse-signature-error < cases.json\n');
  process.exit(2);
}
