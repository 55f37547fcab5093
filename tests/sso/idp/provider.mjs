// A real OpenID provider (node-oidc-provider) for the SSO tests, on 127.0.0.1 only.
//
// Started by tests/sso/idp_server.py with the clients in IDP_CLIENTS (JSON). It listens
// on a free port, then prints "listening <issuer>" so the fixture knows the issuer.
// Logins use the package's development interactions: any password is accepted and the
// login name is the account id; accounts are made up from it:
//   "<anything>@<domain>"            email verified, group "staff"
//   "admin-<anything>@<domain>"      email verified, group "admins"
//   "unverified-<anything>@<domain>" email_verified false
import http from 'node:http';
import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.IDP_CLIENTS ?? '[]');

function account(id) {
  const local = id.split('@')[0];
  return {
    accountId: id,
    async claims() {
      return {
        sub: `sub-${id}`,
        email: id,
        email_verified: !local.startsWith('unverified-'),
        name: `Test ${local}`,
        groups: local.startsWith('admin-') ? ['admins'] : ['staff'],
      };
    },
  };
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    cookies: { keys: ['test-only-cookie-key-not-a-secret'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Scope claims in the ID token too (the relying party may skip userinfo).
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => account(id),
    pkce: { required: () => true },
  });
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
