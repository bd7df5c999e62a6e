/**
 * This server as a SAML service provider (SAML 2.0 Web Browser SSO profile, SP-initiated, HTTP-Redirect
 * binding for the AuthnRequest, HTTP-POST binding for the Response).
 *
 * Signature verification, audience and time conditions are @node-saml/node-saml's (>= 5.1.0, see
 * SECURITY.md), with its unsafe defaults replaced: InResponseTo always required and checked against
 * Postgres, clock skew from SAML_CLOCK_SKEW, signed assertions always required. Around it, response.ts
 * refuses malformed or suspicious documents first and then checks, on the signed assertion only, the
 * Issuer, the bearer Recipient/InResponseTo and the assertion ID (accepted once).
 */
import { SAML, ValidateInResponseTo, type Profile, type SamlConfig } from '@node-saml/node-saml'
import type { SamlSettings } from '../../config/index.js'
import { isDatabaseUnavailable } from '../../errors.js'
import type { Db } from '../../storage/database.js'
import { newSecret } from '../../pki/secrets.js'
import { SignInError, type IdentityClaims, type SignInContext, type VerifiedSignIn } from '../index.js'
import { checkBearerConfirmation, inspectResponse, readSignedAssertion, ResponseRefused, type ResponseEnvelope } from './response.js'
import { AUTHN_REQUEST_LIFETIME_MS, RequestCache, SamlStore } from './store.js'
import { XmlRefused } from './xml.js'

export interface SamlEndpoints {
  /** Assertion consumer service URL (HTTP-POST). */
  callback: string
}

/** What the IdP posts to the assertion consumer. */
export interface SamlPost {
  SAMLResponse: string
  RelayState?: string
}

/** When no assertion time is known, remember its ID this long. */
const DEFAULT_ASSERTION_MEMORY_MS = 24 * 3600_000
const MAX_GROUPS = 1000

export class SamlServiceProvider {
  private readonly store: SamlStore

  constructor(
    private readonly settings: SamlSettings,
    private readonly endpoints: SamlEndpoints,
    db: Db,
  ) {
    this.store = new SamlStore(db)
  }

  private saml(cache: RequestCache): SAML {
    const s = this.settings
    const options: SamlConfig = {
      entryPoint: s.idp.ssoUrl,
      issuer: s.spEntityId,
      audience: s.spEntityId,
      callbackUrl: this.endpoints.callback,
      idpCert: s.idp.certificates,
      idpIssuer: s.idp.entityId,
      identifierFormat: s.nameIdFormat,
      wantAssertionsSigned: true,
      wantAuthnResponseSigned: s.wantResponseSigned,
      validateInResponseTo: ValidateInResponseTo.always,
      requestIdExpirationPeriodMs: AUTHN_REQUEST_LIFETIME_MS,
      cacheProvider: cache,
      acceptedClockSkewMs: s.clockSkewMs,
      // A RequestedAuthnContext of "password, exact" makes IdPs refuse users who signed in with MFA,
      // passkeys or certificates (Entra ID: AADSTS75011); the IdP's own policy decides instead.
      disableRequestedAuthnContext: true,
      authnRequestBinding: 'HTTP-Redirect',
      signatureAlgorithm: 'sha256',
      ...(s.spSigning ? { privateKey: s.spSigning.keyPem, publicCert: s.spSigning.certificatePem } : {}),
    }
    return new SAML(options)
  }

  /** Stores a new AuthnRequest for `context` and returns the IdP URL to send the browser to. */
  async start(context: SignInContext): Promise<string> {
    await this.store.purgeExpired()
    // RelayState goes to the IdP and comes back with the response; only its hash is stored.
    const relayState = newSecret()
    const cache = new RequestCache(this.store, { teamId: context.teamId, userIdentifier: context.userIdentifier, relayState })
    return this.saml(cache).getAuthorizeUrlAsync(relayState, undefined, {})
  }

  /** Validates a posted SAMLResponse; returns the verified identity or throws SignInError. */
  async consume(post: SamlPost): Promise<VerifiedSignIn> {
    let envelope: ResponseEnvelope
    try {
      envelope = inspectResponse(post.SAMLResponse)
    } catch (err) {
      throw refusal(err)
    }
    const { inResponseTo } = envelope
    if (envelope.destination !== undefined && envelope.destination !== this.endpoints.callback) {
      throw new SignInError('invalid_response', `Response Destination ${envelope.destination} is not ${this.endpoints.callback}`)
    }
    if (envelope.issuer !== undefined && envelope.issuer !== this.settings.idp.entityId) {
      throw new SignInError('invalid_response', `Response Issuer ${envelope.issuer} is not the configured IdP ${this.settings.idp.entityId}`)
    }

    const cache = new RequestCache(this.store)
    let profile: Profile | null
    try {
      ;({ profile } = await this.saml(cache).validatePostResponseAsync({ SAMLResponse: post.SAMLResponse }))
    } catch (err) {
      if (isDatabaseUnavailable(err)) throw err
      const message = (err as Error).message ?? String(err)
      if (/InResponseTo is not valid|SubjectInResponseTo is not valid/.test(message)) {
        throw new SignInError('request_unknown', `InResponseTo ${inResponseTo} names no pending request (unknown, expired or already used)`, { cause: err })
      }
      throw new SignInError('invalid_response', `node-saml refused the response: ${message}`, { cause: err })
    }
    if (!profile) throw new SignInError('invalid_response', 'the response carries no assertion')

    let claims: IdentityClaims
    try {
      const assertion = readSignedAssertion(profile.getAssertionXml!())
      if (assertion.issuer !== this.settings.idp.entityId) {
        throw new ResponseRefused('invalid', `Assertion Issuer ${assertion.issuer} is not the configured IdP ${this.settings.idp.entityId}`)
      }
      checkBearerConfirmation(assertion, { recipient: this.endpoints.callback, inResponseTo })
      claims = this.claims(profile)
      // node-saml consumed the request through the cache unless the SubjectConfirmationData had no
      // InResponseTo (checkBearerConfirmation above refuses that); consume it here in any case.
      if (cache.consumed !== inResponseTo && !(await cache.removeAsync(inResponseTo))) {
        throw new SignInError('request_unknown', `request ${inResponseTo} was consumed by another response`)
      }
      const expiresAt = new Date((assertion.expiresAt?.getTime() ?? Date.now() + DEFAULT_ASSERTION_MEMORY_MS) + this.settings.clockSkewMs)
      if (!(await this.store.rememberAssertion(assertion.issuer, assertion.id, expiresAt))) {
        throw new SignInError('replayed_assertion', `assertion ${assertion.id} from ${assertion.issuer} was accepted before`)
      }
    } catch (err) {
      // Whatever refused the response, the request is spent: nobody gets a second try at it.
      await cache.removeAsync(inResponseTo).catch(() => {})
      throw refusal(err)
    }

    const request = await this.store.findRequest(inResponseTo)
    if (!request) throw new SignInError('request_unknown', `request ${inResponseTo} vanished after it was consumed`)
    if (!this.store.relayStateMatches(request, post.RelayState)) {
      throw new SignInError('invalid_response', `RelayState does not match the one sent with request ${inResponseTo}`)
    }
    return { method: 'saml', claims, context: { teamId: request.teamId, userIdentifier: request.userIdentifier } }
  }

  private claims(profile: Profile): IdentityClaims {
    const attributes = (profile.attributes ?? {}) as Record<string, unknown>
    const names = this.settings.attributes
    const subject = profile.nameID
    if (!subject) throw new SignInError('missing_identity', 'the assertion has no NameID')
    if (subject.length > 1024) throw new SignInError('invalid_response', 'NameID longer than 1024 characters')
    const email = names.email ? first(attributes[names.email]) : subject
    return {
      issuer: this.settings.idp.entityId,
      subject,
      email: email ?? null,
      displayName: names.displayName ? (first(attributes[names.displayName]) ?? null) : null,
      groups: names.groups ? strings(attributes[names.groups]).slice(0, MAX_GROUPS) : [],
    }
  }

  /** SP metadata for the administrator to register at the IdP. */
  metadata(): string {
    const signing = this.settings.spSigning
    return this.saml(new RequestCache(this.store)).generateServiceProviderMetadata(null, signing ? signing.certificatePem : null)
  }
}

function strings(value: unknown): string[] {
  const list = Array.isArray(value) ? value : value === undefined ? [] : [value]
  return list.filter((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 1024)
}

function first(value: unknown): string | undefined {
  return strings(value)[0]
}

function refusal(err: unknown): unknown {
  if (err instanceof SignInError || isDatabaseUnavailable(err)) return err
  if (err instanceof ResponseRefused) {
    const failure = err.kind === 'unsolicited' ? 'unsolicited_response' : err.kind === 'idp_status' ? 'idp_refused' : 'invalid_response'
    return new SignInError(failure, err.message, { cause: err })
  }
  if (err instanceof XmlRefused) return new SignInError('invalid_response', err.message, { cause: err })
  return err
}
