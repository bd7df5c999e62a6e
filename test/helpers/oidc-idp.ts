/**
 * A real OpenID provider (oidc-provider) in-process on 127.0.0.1, with a client registered the way an
 * administrator registers this server: confidential (client_secret_basic), native application type so
 * that Apple's custom-scheme redirect URI is allowed, authorization_code + refresh_token, no PKCE
 * required (Apple's client sends none). Its login page checks a password; consent is granted without a
 * page, as for an administrator-approved enterprise app.
 *
 * Every code and token the provider issues is recorded so tests can prove none reaches a log line.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import Provider, { type Configuration } from 'oidc-provider'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js'

export const APPLE_REDIRECT_URI = 'apple-remotemanagement-user-login:/oauth2/redirection'

export interface TestAccount {
  sub: string
  password: string
  email?: string
  emailVerified?: boolean
  name?: string
  groups?: string[]
  /** The IdP no longer knows this account: refreshes fail with invalid_grant. */
  disabled?: boolean
}

export interface TestIdp {
  /** The issuer, reached through a proxy the test can cut (`down()` / `up()`). */
  issuer: string
  clientId: string
  clientSecret: string
  accounts: Map<string, TestAccount>
  /** Codes, access tokens and refresh tokens the provider issued, in order. */
  issued: { codes: string[]; accessTokens: string[]; refreshTokens: string[] }
  /** Token endpoint requests that reached the provider. */
  tokenRequests: number
  /** The provider refuses connections until `up()`. */
  down(): Promise<void>
  up(): Promise<void>
  close(): Promise<void>
}

export interface TestIdpOptions {
  clientId?: string
  redirectUris?: string[]
  /** Rotate its refresh tokens on every use (and revoke the grant when an old one is replayed). */
  rotateRefreshTokens?: boolean
  /**
   * Serve https with this certificate, the issuer named `https://<host>:<port>` (the client reaches it
   * through its own name mapping, e.g. the doctor's --connect-to). Default: http on 127.0.0.1.
   */
  tls?: { key: string; cert: string; host: string }
}

export async function startTestIdp(options: TestIdpOptions = {}): Promise<TestIdp> {
  const accounts = new Map<string, TestAccount>()
  const clientId = options.clientId ?? 'byod-mdm'
  const clientSecret = randomBytes(24).toString('base64url')
  const issued = { codes: [] as string[], accessTokens: [] as string[], refreshTokens: [] as string[] }

  let handler: ReturnType<Provider['callback']> | undefined
  let provider: Provider | undefined
  const listener: http.RequestListener = (req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      interaction(provider!, accounts, req, res).catch((err: Error) => {
        res.statusCode = 500
        res.end(err.message)
      })
      return
    }
    if (req.url?.startsWith('/token')) state.tokenRequests++
    handler!(req, res)
  }
  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, listener) : http.createServer(listener)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const target = { host: '127.0.0.1', port: (server.address() as AddressInfo).port }
  // The issuer is the proxy's address, so the whole IdP (discovery, token, JWKS) can be cut at once.
  const proxy: TcpProxy = await startTcpProxy(target)
  const issuer = options.tls ? `https://${options.tls.host}:${proxy.port}` : `http://127.0.0.1:${proxy.port}`

  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const configuration: Configuration = {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        application_type: 'native',
        redirect_uris: options.redirectUris ?? [APPLE_REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' }] as never },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = accounts.get(sub)
      if (!account || account.disabled) return undefined
      return {
        accountId: sub,
        async claims() {
          return { sub, email: account.email, email_verified: account.emailVerified ?? true, name: account.name, groups: account.groups }
        },
      }
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: options.rotateRefreshTokens ?? true,
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400 },
  }
  provider = new Provider(issuer, configuration)
  provider.on('authorization_code.saved', (m: { jti: string }) => issued.codes.push(m.jti))
  provider.on('access_token.saved', (m: { jti: string }) => issued.accessTokens.push(m.jti))
  provider.on('refresh_token.saved', (m: { jti: string }) => issued.refreshTokens.push(m.jti))
  // Expected refusals (bad codes, replays) would otherwise print to the test output.
  provider.on('server_error', () => {})
  handler = provider.callback()

  const state: TestIdp = {
    issuer,
    clientId,
    clientSecret,
    accounts,
    issued,
    tokenRequests: 0,
    down: () => proxy.cut(),
    up: () => proxy.restore(),
    async close() {
      await proxy.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return state
}

/** The provider's login page and its form post (`/interaction/:uid` and `/interaction/:uid/login`), and consent. */
async function interaction(provider: Provider, accounts: Map<string, TestAccount>, req: http.IncomingMessage, res: http.ServerResponse) {
  const details = await provider.interactionDetails(req, res)
  const loginHint = typeof details.params.login_hint === 'string' ? details.params.login_hint : ''
  if (details.prompt.name === 'consent') {
    // oidc-provider asks native clients for consent every time; the administrator approved this app for
    // the whole organisation, so the IdP grants what was asked without a page.
    const { Grant } = provider
    const grant = details.grantId ? await Grant.find(details.grantId) : new Grant({ accountId: details.session!.accountId, clientId: String(details.params.client_id) })
    grant!.addOIDCScope(String(details.params.scope))
    const grantId = await grant!.save()
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
    return
  }
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(loginPage(details.uid, loginHint, ''))
    return
  }
  const form = new URLSearchParams(await readBody(req))
  const account = [...accounts.values()].find((a) => a.email === form.get('login') || a.sub === form.get('login'))
  if (!account || account.password !== form.get('password')) {
    res.statusCode = 401
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(loginPage(details.uid, form.get('login') ?? '', 'Wrong user name or password'))
    return
  }
  await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false })
}

function loginPage(uid: string, login: string, error: string): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
  return `<!doctype html><title>Sign in</title><p>${esc(error)}</p>
<form method="post" action="/interaction/${esc(uid)}/login">
<input name="login" value="${esc(login)}"><input name="password" type="password"><button>Sign in</button></form>`
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => resolve(body))
    req.on('error', reject)
  })
}
