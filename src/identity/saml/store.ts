/**
 * SAML state as the service provider uses it: pending AuthnRequests and accepted assertion IDs, kept in
 * the database (storage/saml.ts) so that a sign-in started on one server process can finish on another
 * (SECURITY.md row 15), and node-saml's InResponseTo cache on top of it.
 */
import type { CacheItem, CacheProvider } from '@node-saml/node-saml'
import { hashSecret, secretMatches } from '../../pki/secrets.js'
import type { Db } from '../../storage/database.js'
import {
  consumeAuthnRequest,
  findAuthnRequest,
  pendingAuthnRequestSince,
  purgeSamlState,
  rememberAssertion,
  saveAuthnRequest,
} from '../../storage/saml.js'
import type { SamlAuthnRequest } from '../../storage/types.js'

/** How long the user has at the IdP (password, MFA, ...) before the request expires. */
export const AUTHN_REQUEST_LIFETIME_MS = 15 * 60_000
/** Consumed and expired requests are kept this long for support questions, then purged. */
const KEEP_EXPIRED_MS = 24 * 3600_000

export interface NewAuthnRequest {
  requestId: string
  teamId: string
  userIdentifier: string | null
  relayState: string
}

/** The SAML state this service provider keeps, over the storage module. */
export class SamlStore {
  constructor(private readonly db: Db) {}

  saveRequest(r: NewAuthnRequest, now = new Date()): Promise<void> {
    return saveAuthnRequest(this.db, {
      requestId: r.requestId,
      teamId: r.teamId,
      userIdentifier: r.userIdentifier,
      relayStateHash: hashSecret(r.relayState),
      createdAt: now,
      expiresAt: new Date(now.getTime() + AUTHN_REQUEST_LIFETIME_MS),
    })
  }

  pendingSince(requestId: string, now = new Date()): Promise<Date | null> {
    return pendingAuthnRequestSince(this.db, requestId, now)
  }

  consume(requestId: string, now = new Date()): Promise<boolean> {
    return consumeAuthnRequest(this.db, requestId, now)
  }

  findRequest(requestId: string): Promise<SamlAuthnRequest | null> {
    return findAuthnRequest(this.db, requestId)
  }

  relayStateMatches(request: SamlAuthnRequest, relayState: string | undefined): boolean {
    return relayState !== undefined && secretMatches(relayState, request.relayStateHash)
  }

  rememberAssertion(issuer: string, assertionId: string, expiresAt: Date): Promise<boolean> {
    return rememberAssertion(this.db, issuer, assertionId, expiresAt)
  }

  purgeExpired(now = new Date()): Promise<void> {
    return purgeSamlState(this.db, new Date(now.getTime() - KEEP_EXPIRED_MS), now)
  }
}

/**
 * node-saml's InResponseTo cache, backed by the table above. node-saml 5.1 calls, per response:
 * `getAsync(InResponseTo)` before checking any signature, `getAsync(SubjectConfirmationData
 * InResponseTo)` and `removeAsync(InResponseTo)` once the signature holds but before the audience and
 * time conditions are checked, and `removeAsync` again from its catch block on any failure. It ignores
 * what `removeAsync` returns, so on its own it cannot stop two concurrent posts of one response that
 * both passed `getAsync`. Hence `removeAsync` here is the atomic take and records whether *this*
 * validation won it; the caller refuses the sign-in unless `consumed` names its request. A failed
 * validation burns the request too: the user starts again, and nobody gets a second try at it.
 * `saveAsync` stores the request with the context it was started for (one instance per request).
 */
export class RequestCache implements CacheProvider {
  /** The request this validation consumed, if it won the take. */
  consumed: string | null = null

  constructor(
    private readonly store: SamlStore,
    private readonly context?: Omit<NewAuthnRequest, 'requestId'>,
  ) {}

  async saveAsync(key: string, value: string): Promise<CacheItem | null> {
    if (!this.context) throw new Error('this request cache cannot start requests')
    await this.store.saveRequest({ requestId: key, ...this.context })
    return { value, createdAt: Date.now() }
  }

  async getAsync(key: string): Promise<string | null> {
    const since = await this.store.pendingSince(key)
    return since ? since.toISOString() : null
  }

  async removeAsync(key: string | null): Promise<string | null> {
    if (!key) return null
    if (this.consumed === key) return key
    if (await this.store.consume(key)) {
      this.consumed = key
      return key
    }
    return null
  }
}
