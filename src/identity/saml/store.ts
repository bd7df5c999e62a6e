/**
 * SAML state in Postgres: pending AuthnRequests and accepted assertion IDs. Nothing lives in process
 * memory, so a sign-in started on one server process can finish on another (SECURITY.md row 15).
 */
import type { CacheItem, CacheProvider } from '@node-saml/node-saml'
import type { PrismaClient, SamlAuthnRequest } from '../../generated/prisma/client.js'
import { hashSecret, secretMatches } from '../../services/secrets.js'

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

export class SamlStore {
  constructor(private readonly prisma: PrismaClient) {}

  async saveRequest(r: NewAuthnRequest, now = new Date()): Promise<void> {
    await this.prisma.samlAuthnRequest.create({
      data: {
        requestId: r.requestId,
        teamId: r.teamId,
        userIdentifier: r.userIdentifier,
        relayStateHash: hashSecret(r.relayState),
        createdAt: now,
        expiresAt: new Date(now.getTime() + AUTHN_REQUEST_LIFETIME_MS),
      },
    })
  }

  /** When the request was created, if it is still waiting for its response; null otherwise. */
  async pendingSince(requestId: string, now = new Date()): Promise<Date | null> {
    const row = await this.prisma.samlAuthnRequest.findFirst({
      where: { requestId, consumedAt: null, expiresAt: { gt: now } },
      select: { createdAt: true },
    })
    return row?.createdAt ?? null
  }

  /** Marks the request used. True for exactly one caller, however many race for it. */
  async consume(requestId: string, now = new Date()): Promise<boolean> {
    const { count } = await this.prisma.samlAuthnRequest.updateMany({
      where: { requestId, consumedAt: null, expiresAt: { gt: now } },
      data: { consumedAt: now },
    })
    return count === 1
  }

  async findRequest(requestId: string): Promise<SamlAuthnRequest | null> {
    return this.prisma.samlAuthnRequest.findUnique({ where: { requestId } })
  }

  relayStateMatches(request: SamlAuthnRequest, relayState: string | undefined): boolean {
    return relayState !== undefined && secretMatches(relayState, request.relayStateHash)
  }

  /** Records an accepted assertion; false when it was accepted before (a replay). */
  async rememberAssertion(issuer: string, assertionId: string, expiresAt: Date): Promise<boolean> {
    // ON CONFLICT DO NOTHING on the primary key: the second insert of the same assertion counts 0.
    const { count } = await this.prisma.samlAssertion.createMany({ data: [{ issuer, assertionId, expiresAt }], skipDuplicates: true })
    return count === 1
  }

  async purgeExpired(now = new Date()): Promise<void> {
    await this.prisma.samlAuthnRequest.deleteMany({ where: { expiresAt: { lt: new Date(now.getTime() - KEEP_EXPIRED_MS) } } })
    await this.prisma.samlAssertion.deleteMany({ where: { expiresAt: { lt: now } } })
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
