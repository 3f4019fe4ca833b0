// A real OpenID provider for the dashboard login test: npm `oidc-provider`
// (a certified implementation) on loopback, with dev interactions (a plain
// login form: any password) and a `groups` claim.
//
// Usage: node provider.mjs CONFIG.json
//   CONFIG: { "modules": DIR (holds node_modules/oidc-provider),
//             "port": N, "clients": [...], "groups": { "alice": ["team-a"] } }
// Prints "listening ISSUER" once it accepts connections.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const entry = `${config.modules}/node_modules/oidc-provider/lib/index.js`;
const { default: Provider } = await import(pathToFileURL(entry).href);

const issuer = `http://127.0.0.1:${config.port}`;
const provider = new Provider(issuer, {
  clients: config.clients,
  // Any login name is an account; its groups come from the config.
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, groups: config.groups[id] ?? [] }),
  }),
  claims: { openid: ['sub'], groups: ['groups'] },
  scopes: ['openid', 'groups'],
  // Put the scope's claims into the ID token (the code flow would otherwise
  // leave them to the userinfo endpoint).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
});
provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
