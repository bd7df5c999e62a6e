/** How users sign in: the SAML IdP and web sign-in policy (apple-as-web), the OIDC provider (apple-oauth2). */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { MetadataError, parseIdpMetadata, type IdpSettings } from '../identity/saml/metadata.js'
import { isLoopbackHost, serverUrls } from '../protocol/urls.js'
import type { Env } from './index.js'
import { pemBlocks, readIdentity, readPem, type PemIdentity } from './pem.js'
import { ConfigError, type Environment } from './values.js'

/** The redirect URL Apple's client registers its web authentication session for (PROTOCOL.md section 4). */
export const APPLE_OAUTH2_REDIRECT_URL = 'apple-remotemanagement-user-login:/oauth2/redirection'

/**
 * The OpenID Connect provider behind the `apple-oauth2` sign-in: the device signs in there directly, and
 * this server, the confidential client, redeems the code (identity/oidc.ts).
 */
export interface OidcSettings {
  issuer: string
  clientId: string
  clientSecret: string
  scope: string
  /** What the device passes as redirect_uri; the token endpoint refuses any other. */
  redirectUrl: string
  tokenAuthMethod: 'client_secret_basic' | 'client_secret_post'
  claims: { email: string; name: string; groups: string }
  timeoutSeconds: number
  /** Tests only: an http:// issuer on a loopback address. */
  allowInsecureHttp: boolean
}

/** A SAML identity provider and how this server, the service provider, talks to it. */
export interface SamlSettings {
  idp: IdpSettings
  /** Our entity id: the Audience the IdP must address assertions to. */
  spEntityId: string
  /** Signs AuthnRequests when set. */
  spSigning?: PemIdentity
  /** Require a signature on the whole Response (the assertion signature is always required). */
  wantResponseSigned: boolean
  nameIdFormat: string
  /** Attribute names; the email falls back to the NameID. */
  attributes: { email?: string; displayName?: string; groups?: string }
  clockSkewMs: number
}

/** Web sign-in (the `apple-as-web` page) and the policy applied to every sign-in. */
export interface SsoConfig {
  /** null when no IdP is configured: then only the development sign-in is offered. */
  saml: SamlSettings | null
  /** The development sign-in (type any email) is offered: no IdP, and a loopback SERVER_URL or ALLOW_DEV_SIGNIN. */
  devSignIn: boolean
  /** The signed-in email must equal (case-insensitively) the user-identifier typed on the device. */
  requireIdentifierMatch: boolean
  /** Team name -> IdP groups allowed to enroll into it; teams not listed are open to every signed-in user. */
  teamGroups: Record<string, string[]>
  /** Requests per minute per client address on the SSO endpoints. */
  rateLimitPerMinute: number
}

/**
 * The OIDC provider, required with AUTH_METHOD=oauth2 and optional otherwise (a team may still choose
 * oauth2 when it is set). Half a configuration is an error either way.
 */
export function readOidc(e: Env): OidcSettings | null {
  const given = e.OIDC_ISSUER ?? e.OIDC_CLIENT_ID ?? e.OIDC_CLIENT_SECRET
  if (given === undefined && e.AUTH_METHOD !== 'oauth2') return null
  const why = e.AUTH_METHOD === 'oauth2' ? 'required with AUTH_METHOD=oauth2' : 'required when any OIDC_ variable is set'
  if (!e.OIDC_ISSUER) throw new ConfigError('OIDC_ISSUER', `${why} (the identity provider's issuer URL)`)
  if (!e.OIDC_CLIENT_ID) throw new ConfigError('OIDC_CLIENT_ID', why)
  if (!e.OIDC_CLIENT_SECRET) throw new ConfigError('OIDC_CLIENT_SECRET', `${why}: the device is a public client, this server redeems codes with the secret`)
  const issuer = new URL(e.OIDC_ISSUER)
  if (issuer.search || issuer.hash) throw new ConfigError('OIDC_ISSUER', 'must not contain a query string or fragment')
  if (e.OIDC_ALLOW_INSECURE_HTTP && !isLoopbackHost(issuer.hostname)) {
    throw new ConfigError('OIDC_ALLOW_INSECURE_HTTP', 'may only be true for an issuer on a loopback address (it exists for tests)')
  }
  if (issuer.protocol !== 'https:' && !e.OIDC_ALLOW_INSECURE_HTTP) throw new ConfigError('OIDC_ISSUER', 'must be an https:// URL')
  return {
    issuer: e.OIDC_ISSUER,
    clientId: e.OIDC_CLIENT_ID,
    clientSecret: e.OIDC_CLIENT_SECRET,
    scope: e.OIDC_SCOPE,
    redirectUrl: parseRedirectUrl(e.OIDC_REDIRECT_URL),
    tokenAuthMethod: e.OIDC_TOKEN_AUTH_METHOD,
    claims: { email: e.OIDC_EMAIL_CLAIM, name: e.OIDC_NAME_CLAIM, groups: e.OIDC_GROUPS_CLAIM },
    timeoutSeconds: e.OIDC_HTTP_TIMEOUT,
    allowInsecureHttp: e.OIDC_ALLOW_INSECURE_HTTP,
  }
}

/**
 * The redirect URI is compared as a string by the IdP and by our token endpoint, and openid-client
 * derives the one it sends from a parsed URL: the value must survive parsing unchanged.
 */
function parseRedirectUrl(value: string): string {
  let parsed: URL
  try {
    parsed = new URL(value)
  } catch {
    throw new ConfigError('OIDC_REDIRECT_URL', 'expected an absolute URL such as apple-remotemanagement-user-login:/oauth2/redirection')
  }
  // Apple's client opens the sign-in in a web authentication session registered for this scheme only: a
  // redirect anywhere else never comes back to the device (PROTOCOL.md section 4).
  if (parsed.protocol !== 'apple-remotemanagement-user-login:') {
    throw new ConfigError('OIDC_REDIRECT_URL', `must use the apple-remotemanagement-user-login: scheme (${APPLE_OAUTH2_REDIRECT_URL}); a device never returns from any other`)
  }
  if (parsed.search || parsed.hash) throw new ConfigError('OIDC_REDIRECT_URL', 'must not contain a query string or fragment')
  if (parsed.href !== value) throw new ConfigError('OIDC_REDIRECT_URL', `must be written in normal form (${parsed.href})`)
  if (/[\u0000-\u0020"\\]/.test(value)) throw new ConfigError('OIDC_REDIRECT_URL', 'must not contain spaces, quotes or backslashes')
  return value
}

export function readSso(env: Environment, e: Env, serverUrl: string): SsoConfig {
  const saml = readSaml(env, e, serverUrl)
  // Only this machine can reach a loopback SERVER_URL: the development sign-in is harmless there.
  const devSignIn = !saml && (e.ALLOW_DEV_SIGNIN || isLoopbackHost(new URL(serverUrl).hostname))
  // With AUTH_METHOD=oauth2 the page is only used by teams that choose saml themselves: no IdP needed.
  if (!saml && !devSignIn && e.AUTH_METHOD === 'saml') {
    throw new ConfigError(
      'SAML_IDP_METADATA',
      `no identity provider is configured (set SAML_IDP_METADATA, or SAML_IDP_SSO_URL + SAML_IDP_ENTITY_ID + SAML_IDP_CERT, or AUTH_METHOD=oauth2 with OIDC_ISSUER); the development sign-in is only offered when SERVER_URL is a loopback address or ALLOW_DEV_SIGNIN=true`,
    )
  }
  return {
    saml,
    devSignIn,
    requireIdentifierMatch: e.SSO_REQUIRE_IDENTIFIER_MATCH,
    teamGroups: e.SSO_TEAM_GROUPS ? parseTeamGroups(e.SSO_TEAM_GROUPS) : {},
    rateLimitPerMinute: e.SSO_RATE_LIMIT,
  }
}

function readSaml(env: Environment, e: Env, serverUrl: string): SamlSettings | null {
  const manual = e.SAML_IDP_SSO_URL || e.SAML_IDP_CERT || e.SAML_IDP_ENTITY_ID
  if (e.SAML_IDP_METADATA && manual) {
    throw new ConfigError('SAML_IDP_METADATA', 'set either SAML_IDP_METADATA or SAML_IDP_SSO_URL/SAML_IDP_ENTITY_ID/SAML_IDP_CERT, not both')
  }
  let idp: IdpSettings
  if (e.SAML_IDP_METADATA) {
    const value = e.SAML_IDP_METADATA.trim()
    let xml = value
    if (!value.startsWith('<')) {
      try {
        xml = readFileSync(value, 'utf8')
      } catch (err) {
        throw new ConfigError('SAML_IDP_METADATA', `cannot read metadata file ${value}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      }
    }
    try {
      idp = parseIdpMetadata(xml)
    } catch (err) {
      if (err instanceof MetadataError) throw new ConfigError('SAML_IDP_METADATA', err.message)
      throw err
    }
  } else if (manual) {
    if (!e.SAML_IDP_SSO_URL) throw new ConfigError('SAML_IDP_SSO_URL', 'required when SAML_IDP_ENTITY_ID or SAML_IDP_CERT is set')
    if (!e.SAML_IDP_ENTITY_ID) throw new ConfigError('SAML_IDP_ENTITY_ID', 'required when SAML_IDP_SSO_URL is set (the IdP\'s entity id, also called issuer or identifier)')
    if (!e.SAML_IDP_CERT) throw new ConfigError('SAML_IDP_CERT', 'required when SAML_IDP_SSO_URL is set (the IdP\'s SAML signing certificate)')
    const certificates = pemBlocks(readPem('SAML_IDP_CERT', e.SAML_IDP_CERT), /^CERTIFICATE$/)
    if (certificates.length === 0) throw new ConfigError('SAML_IDP_CERT', 'contains no CERTIFICATE block')
    for (const pem of certificates) {
      try {
        new X509Certificate(pem)
      } catch (err) {
        throw new ConfigError('SAML_IDP_CERT', `is not a valid certificate: ${(err as Error).message}`)
      }
    }
    idp = { entityId: e.SAML_IDP_ENTITY_ID, ssoUrl: e.SAML_IDP_SSO_URL, certificates, wantAuthnRequestsSigned: false }
  } else {
    return null
  }
  const spSigning = readIdentity(env, 'SAML_SP_CERT', 'SAML_SP_KEY')
  if (idp.wantAuthnRequestsSigned && !spSigning) {
    throw new ConfigError('SAML_SP_KEY', 'the IdP metadata asks for signed AuthnRequests (WantAuthnRequestsSigned): set SAML_SP_CERT and SAML_SP_KEY')
  }
  return {
    idp,
    spEntityId: e.SAML_SP_ENTITY_ID ?? serverUrls(serverUrl).ssoMetadata,
    spSigning,
    wantResponseSigned: e.SAML_WANT_RESPONSE_SIGNED,
    nameIdFormat: e.SAML_NAMEID_FORMAT,
    attributes: { email: e.SAML_EMAIL_ATTRIBUTE, displayName: e.SAML_NAME_ATTRIBUTE, groups: e.SAML_GROUPS_ATTRIBUTE },
    clockSkewMs: e.SAML_CLOCK_SKEW * 1000,
  }
}

const teamGroupsSchema = z.record(z.string().min(1), z.array(z.string().min(1)).min(1))

/** `{"Team name": ["group", ...], ...}` */
function parseTeamGroups(value: string): Record<string, string[]> {
  let json: unknown
  try {
    json = JSON.parse(value)
  } catch {
    throw new ConfigError('SSO_TEAM_GROUPS', 'expected JSON such as {"Default": ["mdm-users"]}')
  }
  const parsed = teamGroupsSchema.safeParse(json)
  if (!parsed.success) throw new ConfigError('SSO_TEAM_GROUPS', 'expected an object mapping team names to non-empty lists of group names, such as {"Default": ["mdm-users"]}')
  return parsed.data
}
