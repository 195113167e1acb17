// Starts panva's oidc-provider as a plain OAuth 2.0 authorization server for the Rust
// interop tests, and exits when stdin closes: the Rust test that started it holds the
// other end of the pipe, so the server ends when the test ends, however it ends (a panic,
// a kill), and no process is left behind.
//
// Environment (all optional):
//   ISSUER            issuer identifier (default https://op.example)
//   PORT              port to listen on; 0 (the default) lets the system pick
//   IP                address to listen on (default 127.0.0.1)
//   OP_JWKS           the server's signing keys, a private JWKS as a JSON string; without it
//                     an RSA 2048 key (kid "rs", RS256) and a P-256 key (kid "es", ES256) are
//                     generated at start
//   JWT_CLIENT_JWKS   public JWKS (JSON string) of `jwt-client` (private_key_jwt); without
//                     it that client does not exist
//   ACCESS_TOKEN_TTL  access token lifetime in seconds (default 300)
//   DPOP_NONCE        when "1", every DPoP proof at the token endpoint must carry a
//                     server-provided nonce (RFC 9449 §8): a proof without one is refused
//                     with use_dpop_nonce and a DPoP-Nonce to use
//
// stdout carries exactly one line, `listening on http://{IP}:{port}`, once the socket is
// bound; everything else (oidc-provider's notices included) goes to stderr.
//
// The server speaks plain HTTP. It sits behind the tests' TLS-terminating shim, which
// must add `X-Forwarded-Proto: https` (and keep `Host` = the issuer's host): with
// `proxy = true` oidc-provider (Koa) then builds its https URLs (discovery, DPoP `htu`,
// client assertion `aud`) from them.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();

// oidc-provider prints its NOTICEs with console.info (stdout); keep stdout for our line.
// (Set before oidc-provider is loaded, hence the dynamic import.)
console.info = console.error;
console.log = console.error;
const { default: Provider, errors } = await import('oidc-provider');

const env = process.env;
const ISSUER = env.ISSUER || 'https://op.example';
const PORT = Number(env.PORT || 0);
const IP = env.IP || '127.0.0.1';
const ACCESS_TOKEN_TTL = Number(env.ACCESS_TOKEN_TTL || 300);
const SECRET = 'basic-secret-0123456789abcdef0123456789abcdef';

// The server's signing keys. oidc-provider picks by alg: RS256 -> "rs", ES256 -> "es".
function generatedJwks() {
  const rs = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const es = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return {
    keys: [
      { ...rs.export({ format: 'jwk' }), kid: 'rs', alg: 'RS256', use: 'sig' },
      { ...es.export({ format: 'jwk' }), kid: 'es', alg: 'ES256', use: 'sig' },
    ],
  };
}
const jwks = env.OP_JWKS ? JSON.parse(env.OP_JWKS) : generatedJwks();

// The resource servers (RFC 8707 resource indicators) a client may ask a token for; any
// other `resource` is refused with invalid_target. Scopes granted: requested ∩ "read write".
const RESOURCE_SERVERS = {
  // JWT access token (RFC 9068), signed RS256 (clientDefaults.id_token_signed_response_alg).
  'https://api.example': { accessTokenFormat: 'jwt' },
  // JWT access token signed ES256 (the "es" key).
  'https://api-es.example': { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } },
  // Opaque access token, to be introspected.
  'https://opaque.example': { accessTokenFormat: 'opaque' },
};

// Client-credentials-only clients.
const cc = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
const clients = [
  { ...cc, client_id: 'basic-client', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
  { ...cc, client_id: 'post-client', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post' },
  // Every token request of this client must carry a DPoP proof.
  { ...cc, client_id: 'dpop-client', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic', dpop_bound_access_tokens: true },
  // May introspect any client's tokens (see introspection.allowedPolicy below).
  { ...cc, client_id: 'introspector', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
];
if (env.JWT_CLIENT_JWKS) {
  clients.push({ ...cc, client_id: 'jwt-client', token_endpoint_auth_method: 'private_key_jwt', jwks: JSON.parse(env.JWT_CLIENT_JWKS) });
}

const provider = new Provider(ISSUER, {
  clients,
  jwks,
  // Only matters for the (unused) interactive flows; random per run.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The introspector reads every token; any other client only its own.
      allowedPolicy: (ctx, client, token) => client.clientId === 'introspector' || client.clientId === token.clientId,
    },
    revocation: { enabled: true },
    dPoP: env.DPOP_NONCE === '1'
      ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No default resource: a request without `resource` gets an opaque, audience-less
      // token (oidc-provider's behaviour), so tests always send one.
      defaultResource: (ctx, client, oneOf) => oneOf,
      getResourceServerInfo: (ctx, resource) => {
        const rs = RESOURCE_SERVERS[resource];
        if (!rs) throw new errors.InvalidTarget();
        return { scope: 'read write', accessTokenTTL: ACCESS_TOKEN_TTL, ...rs };
      },
    },
  },
  ttl: {
    ClientCredentials: ACCESS_TOKEN_TTL,
    AccessToken: ACCESS_TOKEN_TTL,
  },
});
// Trust X-Forwarded-Proto / X-Forwarded-Host from the shim (Koa's app.proxy).
provider.proxy = true;

const server = http.createServer(provider.callback());
server.listen(PORT, IP, () => {
  const { port } = server.address();
  process.stdout.write(`listening on http://${IP}:${port}\n`);
});
