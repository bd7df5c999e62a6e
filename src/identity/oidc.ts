/**
 * The OpenID Connect relying party behind the `apple-oauth2` sign-in (PROTOCOL.md section 4).
 *
 * The device runs the authorization request itself, as a public client without PKCE, and brings the code
 * to our token endpoint. This server is the confidential client: it redeems the code at the IdP with its
 * own secret and the exact redirect URI the device used, validates the ID token, and reads who the user
 * is. openid-client does discovery, client authentication, JWKS caching and the ID token checks
 * (issuer, audience, expiry, signature); this file adds what is specific to us on top.
 *
 * Why neither `state` nor `nonce` is checked here (SECURITY.md asks for both where we start the flow):
 * we do not start it. Apple's client generates `state` and checks it on the redirect before it posts the
 * code to us, and it sends no `nonce`, so the ID token carries none (openid-client then requires that it
 * carries none). What protects the code instead: it is bound to our confidential client and redirect URI,
 * so only this server, holding the client secret, can redeem it, and only once.
 */
import * as oidc from 'openid-client'
import type { OidcSettings } from '../config/index.js'
import type { IdentityClaims } from './index.js'

export type OidcFailureKind =
  /** The IdP could not be reached, timed out or answered 5xx: try again later. */
  | 'unavailable'
  /** The IdP refused the code or refresh token (used, expired, revoked, another client's). */
  | 'refused'
  /** The IdP answered, but its answer (typically the ID token) failed validation. */
  | 'invalid_response'
  /** The IdP refused us as a client, or its metadata is unusable: an administrator must act. */
  | 'misconfigured'

/** A failure talking to the IdP. `message` is for the log: it never contains a token or code. */
export class OidcError extends Error {
  constructor(
    readonly kind: OidcFailureKind,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options)
    this.name = 'OidcError'
  }
}

/** Who the IdP says signed in, and its refresh token when it issued one (never given to the device). */
export interface OidcSignIn {
  claims: IdentityClaims
  idpRefreshToken?: string
  /** Things worth a log line that did not stop the sign-in (e.g. userinfo failed). */
  notes: string[]
}

export interface OidcRefresh {
  /** The IdP rotated its refresh token: store this one instead. */
  idpRefreshToken?: string
  /** Fresh claims when the IdP sent a new ID token. */
  claims?: IdentityClaims
}

/**
 * Signature algorithms accepted on ID tokens. `none` and the HMAC family are refused outright: an HS256 ID
 * token is "signed" with the client secret, which proves nothing about the IdP.
 */
const ASYMMETRIC_ALGS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'])

/** Rediscover the IdP's metadata this often, keeping the previous copy if the IdP is down meanwhile. */
const REDISCOVER_MS = 3600_000

const MAX_CLAIM_LENGTH = 1024
const MAX_GROUPS = 500

export class OidcClient {
  private cached?: { configuration: oidc.Configuration; at: number }
  private pending?: Promise<oidc.Configuration>

  /**
   * `fetch` replaces the global fetch for every request to the IdP: `npm run doctor` sends them through
   * its own transport (extra trust roots, --connect-to) and classifies network failures itself.
   */
  constructor(
    readonly settings: OidcSettings,
    private readonly options: { fetch?: oidc.CustomFetch } = {},
  ) {}

  /** The IdP's authorization endpoint, for the enroll challenge's `authorization-url`. */
  async authorizationEndpoint(): Promise<string> {
    const endpoint = (await this.configuration()).serverMetadata().authorization_endpoint
    if (!endpoint || !this.isAllowedUrl(endpoint)) {
      throw new OidcError('misconfigured', `the IdP's discovery document has no usable authorization_endpoint (${JSON.stringify(endpoint ?? null)})`)
    }
    return endpoint
  }

  /** Redeems an authorization code the device obtained with `redirect_uri = settings.redirectUrl`. */
  async redeemCode(code: string): Promise<OidcSignIn> {
    const configuration = await this.configuration()
    const metadata = configuration.serverMetadata()
    // openid-client reads the code from the URL the authorization response arrived at and sends that
    // URL, stripped of its query, as redirect_uri: exactly OIDC_REDIRECT_URL (config checks it round-trips).
    const callback = new URL(this.settings.redirectUrl)
    callback.searchParams.set('code', code)
    // RFC 9207 mix-up defence is about a client that talks to several IdPs; we redeem at the one configured
    // issuer, and the device does not forward `iss` to us.
    if (metadata.authorization_response_iss_parameter_supported) callback.searchParams.set('iss', metadata.issuer)

    const tokens = await this.call('code redemption', () => oidc.authorizationCodeGrant(configuration, callback, { idTokenExpected: true }))
    const idClaims = this.checkIdToken(tokens)
    const notes: string[] = []
    const userinfo = await this.userinfoIfNeeded(configuration, tokens.access_token, idClaims)
    // The ID token already proved who signed in; userinfo only adds details.
    if (userinfo.failure) notes.push(`userinfo failed, using the ID token's claims only: ${userinfo.failure}`)
    return { claims: this.identity(idClaims, userinfo.claims, notes), idpRefreshToken: tokens.refresh_token, notes }
  }

  /**
   * Userinfo, fetched when the ID token lacks the email, name or groups claim (IdPs such as oidc-provider
   * and Keycloak put scope claims there rather than in the ID token). An unreachable IdP is an error; any
   * other userinfo failure is reported in `failure` with no claims.
   */
  private async userinfoIfNeeded(configuration: oidc.Configuration, accessToken: string, idClaims: oidc.IDToken): Promise<{ claims: Record<string, unknown>; failure?: string }> {
    const { email, name, groups } = this.settings.claims
    const complete = idClaims[email] !== undefined && idClaims[name] !== undefined && idClaims[groups] !== undefined
    if (complete || !configuration.serverMetadata().userinfo_endpoint) return { claims: {} }
    try {
      return { claims: await this.call('userinfo', () => oidc.fetchUserInfo(configuration, accessToken, idClaims.sub)) }
    } catch (err) {
      if (err instanceof OidcError && err.kind === 'unavailable') throw err
      return { claims: {}, failure: (err as Error).message }
    }
  }

  /**
   * Asks the IdP whether it still accepts the user's session (RFC 6749 section 6). `subject` is who the
   * grant belongs to: a new ID token must name the same user (OIDC Core section 12.2).
   */
  async refresh(idpRefreshToken: string, subject: string): Promise<OidcRefresh> {
    const configuration = await this.configuration()
    const tokens = await this.call('refresh', () => oidc.refreshTokenGrant(configuration, idpRefreshToken))
    let claims: IdentityClaims | undefined
    if (tokens.id_token) {
      const idClaims = this.checkIdToken(tokens)
      if (idClaims.sub !== subject) throw new OidcError('invalid_response', 'the ID token from the refresh names another subject')
      // Completed from userinfo like at sign-in; when that fails, no claims at all rather than partial
      // ones that would erase the stored email, name and groups.
      const userinfo = await this.userinfoIfNeeded(configuration, tokens.access_token, idClaims)
      if (!userinfo.failure) claims = this.identity(idClaims, userinfo.claims, [])
    }
    return { idpRefreshToken: tokens.refresh_token, claims }
  }

  private checkIdToken(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): oidc.IDToken {
    const claims = tokens.claims()
    if (!tokens.id_token || !claims) throw new OidcError('invalid_response', 'the IdP returned no ID token (is "openid" in OIDC_SCOPE?)')
    // openid-client refuses `none` and HS* once signatures are checked; this is the explicit rule,
    // independent of what the IdP's metadata advertises.
    const alg = jwtHeaderAlg(tokens.id_token)
    if (!alg || !ASYMMETRIC_ALGS.has(alg)) throw new OidcError('invalid_response', `ID token signed with ${JSON.stringify(alg ?? null)}, not an asymmetric algorithm`)
    return claims
  }

  private identity(idClaims: oidc.IDToken, userinfo: Record<string, unknown>, notes: string[]): IdentityClaims {
    const { email: emailClaim, name: nameClaim, groups: groupsClaim } = this.settings.claims
    const pick = (claim: string) => (idClaims[claim] !== undefined ? idClaims[claim] : userinfo[claim])
    let email = boundedString(pick(emailClaim))
    // An address the IdP itself marks unverified must not become someone's Managed Apple Account.
    if (email && emailClaim === 'email' && pick('email_verified') === false) {
      notes.push('the IdP marks the email address as not verified: ignored')
      email = undefined
    }
    if (idClaims.sub.length > MAX_CLAIM_LENGTH) throw new OidcError('invalid_response', 'the ID token subject is too long')
    return {
      issuer: idClaims.iss,
      subject: idClaims.sub,
      email: email ?? null,
      displayName: boundedString(pick(nameClaim)) ?? null,
      groups: groupList(pick(groupsClaim)),
    }
  }

  /** The IdP's configuration from discovery, cached; concurrent first callers share one request. */
  private async configuration(): Promise<oidc.Configuration> {
    const now = Date.now()
    if (this.cached && now - this.cached.at < REDISCOVER_MS) return this.cached.configuration
    this.pending ??= this.discover().finally(() => {
      this.pending = undefined
    })
    try {
      const configuration = await this.pending
      this.cached = { configuration, at: Date.now() }
      return configuration
    } catch (err) {
      if (!this.cached) throw err
      // Keep serving what the IdP said last; try again in a minute rather than on every request.
      this.cached.at = Date.now() - REDISCOVER_MS + 60_000
      return this.cached.configuration
    }
  }

  private discover(): Promise<oidc.Configuration> {
    const { issuer, clientId, clientSecret, tokenAuthMethod, timeoutSeconds, allowInsecureHttp } = this.settings
    const auth = tokenAuthMethod === 'client_secret_post' ? oidc.ClientSecretPost(clientSecret) : oidc.ClientSecretBasic(clientSecret)
    // Non-repudiation checks make openid-client verify the ID token's signature against the IdP's JWKS
    // too, instead of trusting the TLS connection alone.
    const execute = [oidc.enableNonRepudiationChecks]
    if (allowInsecureHttp) execute.push(oidc.allowInsecureRequests)
    const options: oidc.DiscoveryRequestOptions = { execute, timeout: timeoutSeconds }
    if (this.options.fetch) options[oidc.customFetch] = this.options.fetch
    return this.call('discovery', () => oidc.discovery(new URL(issuer), clientId, { client_secret: clientSecret }, auth, options))
  }

  private isAllowedUrl(value: string): boolean {
    try {
      const url = new URL(value)
      return url.protocol === 'https:' || (this.settings.allowInsecureHttp && url.protocol === 'http:')
    } catch {
      return false
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw classify(what, err)
    }
  }
}

/** OAuth errors that mean the IdP refuses us as a client: an administrator must act. */
const CLIENT_ERRORS = ['invalid_client', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope']
const CLIENT_HINT = " (check OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_TOKEN_AUTH_METHOD and the client's settings at the IdP)"

/** Sorts openid-client's errors into what the token endpoint answers for each. */
export function classify(what: string, err: unknown): OidcError {
  if (err instanceof OidcError) return err
  if (err instanceof oidc.ResponseBodyError) {
    // An OAuth error from the IdP. Its error_description is not repeated: some IdPs echo request values.
    const message = `${what}: the IdP answered ${err.status} ${err.error}`
    if (err.status >= 500 || err.error === 'temporarily_unavailable') return new OidcError('unavailable', message, { cause: err })
    if (CLIENT_ERRORS.includes(err.error)) return new OidcError('misconfigured', `${message}${CLIENT_HINT}`, { cause: err })
    return new OidcError('refused', message, { cause: err })
  }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    // RFC 6749 section 5.2: a client that authenticated with the Authorization header and failed gets 401
    // with a WWW-Authenticate challenge carrying `error="invalid_client"` (oidc-provider does this);
    // openid-client then reports the challenge, not the JSON body beside it.
    const error = err.cause.map((c) => c.parameters.error).find((e): e is string => typeof e === 'string')
    if (error && CLIENT_ERRORS.includes(error)) return new OidcError('misconfigured', `${what}: the IdP answered ${err.status} ${error}${CLIENT_HINT}`, { cause: err })
    return new OidcError(err.status >= 500 ? 'unavailable' : 'refused', `${what}: the IdP answered ${err.status} with a challenge`, { cause: err })
  }
  const code = (err as { code?: unknown }).code
  if (err instanceof oidc.ClientError) {
    if (code === 'OAUTH_TIMEOUT' || code === 'OAUTH_ABORT') return new OidcError('unavailable', `${what}: the IdP did not answer in time`, { cause: err })
    if (code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || code === 'OAUTH_RESPONSE_IS_NOT_JSON') {
      const status = (err.cause as { status?: unknown } | undefined)?.status
      const kind = typeof status === 'number' && status >= 500 ? 'unavailable' : what === 'discovery' ? 'misconfigured' : 'refused'
      return new OidcError(kind, `${what}: unexpected answer from the IdP (HTTP ${String(status)}, ${err.message})`, { cause: err })
    }
    const detail = err.cause instanceof Error && err.cause.message !== err.message ? `: ${err.cause.message}` : ''
    return new OidcError(what === 'discovery' ? 'misconfigured' : 'invalid_response', `${what}: ${err.message}${detail}`, { cause: err })
  }
  // fetch() rejects with a TypeError whose cause is the socket error (ECONNREFUSED, ENOTFOUND, ...).
  if (err instanceof TypeError && (err.message === 'fetch failed' || (err.cause as { code?: unknown } | undefined)?.code !== undefined)) {
    const reason = (err.cause as { code?: string; message?: string } | undefined)?.code ?? (err.cause as Error | undefined)?.message ?? err.message
    return new OidcError('unavailable', `${what}: cannot reach the IdP (${reason})`, { cause: err })
  }
  return new OidcError('misconfigured', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

function jwtHeaderAlg(jwt: string): string | undefined {
  try {
    const header = JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown }
    return typeof header.alg === 'string' ? header.alg : undefined
  } catch {
    return undefined
  }
}

function boundedString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_CLAIM_LENGTH ? value : undefined
}

/** Groups arrive as an array of names, sometimes as one space- or comma-free string. */
function groupList(value: unknown): string[] {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : []
  return list.filter((g): g is string => typeof g === 'string' && g.length > 0 && g.length <= MAX_CLAIM_LENGTH).slice(0, MAX_GROUPS)
}
