/**
 * Signing users in. SAML: the IdP metadata (already parsed by loadConfig, which fails on unreadable
 * metadata) and its signing certificates' validity. OpenID Connect: discovery answers, and the IdP
 * accepts this server as its client: the doctor redeems a made-up authorization code with the client's
 * credentials through the same OidcClient the token endpoint uses. An IdP that knows the client refuses
 * the code with `invalid_grant`; a wrong id or secret gets `invalid_client`.
 */
import { randomBytes, X509Certificate } from 'node:crypto'
import * as openid from 'openid-client'
import type { Config } from '../../config/index.js'
import { isLoopbackHost } from '../../protocol/urls.js'
import { OidcClient, OidcError } from '../../identity/oidc.js'
import { serverUrls } from '../../protocol/urls.js'
import { fetchVia, NetworkError, type NetOptions } from './net.js'
import { fail, isoDate, ok, skipped, validity, warn, type Outcome } from './result.js'

const IDP_HELP = 'README "Signing users in with SAML"'

export function checkSaml(config: Config, now: Date): Outcome {
  const saml = config.sso.saml
  if (!saml) {
    if (config.authMethod === 'oauth2') return skipped('no SAML identity provider: users sign in at the OpenID provider (AUTH_METHOD=oauth2)')
    if (!config.sso.devSignIn) return skipped('no SAML identity provider configured')
    if (!isLoopbackHost(new URL(config.serverUrl).hostname)) {
      return fail(
        `ALLOW_DEV_SIGNIN=true with the public SERVER_URL ${config.serverUrl}: anyone who reaches the server can sign in as any email address and enroll`,
        `remove ALLOW_DEV_SIGNIN and set SAML_IDP_METADATA (${IDP_HELP}), or AUTH_METHOD=oauth2 with OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET`,
      )
    }
    return warn(
      'no identity provider: the development sign-in lets anyone sign in as any email address (fine for trying the server on this machine)',
      `for production set SAML_IDP_METADATA to your IdP's metadata (${IDP_HELP}), or AUTH_METHOD=oauth2 with OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET`,
    )
  }

  const refresh = `download the IdP's current metadata into SAML_IDP_METADATA (or its certificate into SAML_IDP_CERT); while it lists the old and the new certificate, sign-ins continue across the change`
  const certificates = saml.idp.certificates.map((pem) => new X509Certificate(pem))
  const windows = certificates.map((c) => validity(c, now))
  const current = windows.filter((w) => w.status !== 'fail').sort((a, b) => b.notAfter.getTime() - a.notAfter.getTime())
  const idp = `IdP ${saml.idp.entityId}`
  if (current.length === 0) {
    const texts = windows.map((w) => w.text).join(', ')
    return fail(`${idp}: no signing certificate in its metadata is valid now (${texts}): every sign-in fails`, refresh)
  }
  const best = current[0]!
  if (best.status === 'warn') return warn(`${idp}: its signing certificate ${best.text}; after that every sign-in fails unless the metadata here is updated`, refresh)

  const notes: string[] = []
  if (saml.spSigning) {
    const sp = validity(new X509Certificate(saml.spSigning.certificatePem), now)
    if (sp.status !== 'ok') return warn(`${idp} is fine, but SAML_SP_CERT (which signs our AuthnRequests) ${sp.text}`, 'make a new SP key pair (SAML_SP_CERT, SAML_SP_KEY) and give the IdP the new SP metadata')
    notes.push(`AuthnRequests signed with SAML_SP_CERT (valid until ${isoDate(sp.notAfter)})`)
  }
  if (certificates.length > 1) notes.push(`${certificates.length} signing certificates listed`)
  return ok(`${idp}: metadata read, signing certificate valid until ${isoDate(best.notAfter)}${notes.length ? `; ${notes.join('; ')}` : ''}; register ${serverUrls(config.serverUrl).ssoMetadata} at the IdP`)
}

export async function checkOidc(config: Config, net: NetOptions): Promise<Outcome> {
  const settings = config.oidc
  if (!settings) return skipped('no OpenID provider configured (OIDC_ISSUER is not set)')
  const client = new OidcClient(settings, { fetch: fetchVia(net) })
  const issuer = settings.issuer
  try {
    await client.authorizationEndpoint()
  } catch (err) {
    return unreachable(err, issuer) ?? fail(`${(err as Error).message}`, `check OIDC_ISSUER: ${issuer.replace(/\/$/, '')}/.well-known/openid-configuration must answer the provider's metadata, naming exactly this issuer`)
  }

  let outcome: Outcome
  try {
    await client.redeemCode(`byod-mdm-doctor-${randomBytes(16).toString('hex')}`)
    outcome = fail('the IdP accepted a made-up authorization code')
  } catch (err) {
    const offline = unreachable(err, issuer)
    if (offline) return offline
    const oauthError = err instanceof OidcError && err.cause instanceof openid.ResponseBodyError ? err.cause.error : undefined
    if (oauthError === 'invalid_grant') {
      outcome = ok(`discovery answers at ${issuer}, and the IdP accepts client ${settings.clientId} with its secret (${settings.tokenAuthMethod}); it refused only the doctor's made-up code`)
    } else if (err instanceof OidcError && err.kind === 'misconfigured') {
      return fail(err.message, `register this server at the IdP as a confidential client whose redirect URI is ${settings.redirectUrl} (README "Signing users in with OAuth 2 / OpenID Connect")`)
    } else {
      return warn(`the IdP answered a made-up code with ${oauthError ?? (err as Error).message}, not invalid_grant: the doctor cannot tell whether it accepts client ${settings.clientId}`, 'sign in once with the simulator or a device to be sure')
    }
  }
  if (settings.allowInsecureHttp) {
    return warn(`${outcome.message}; but OIDC_ALLOW_INSECURE_HTTP=true, which exists for tests`, 'production needs an https:// issuer: remove OIDC_ALLOW_INSECURE_HTTP')
  }
  return outcome
}

/** skipped when this machine has no way to the IdP; fail when the IdP is there and refuses. */
function unreachable(err: unknown, issuer: string): Outcome | undefined {
  if (!(err instanceof OidcError) || err.kind !== 'unavailable') return undefined
  const cause = (err.cause as { cause?: unknown } | undefined)?.cause
  if (cause instanceof NetworkError && cause.kind === 'offline') return skipped(`${cause.message}`, 'run the doctor where the network reaches the IdP')
  if (cause instanceof NetworkError) return fail(cause.message, `check OIDC_ISSUER (${issuer}) and that this machine may reach it`)
  return fail(`${err.message}`, 'try again later: the IdP answered with a server error')
}
