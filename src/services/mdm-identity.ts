/**
 * Who is talking on the check-in and command channels: the device (its identity certificate, proved on
 * every request) and the user (the bearer token account-driven enrollment adds).
 *
 * The device: `Mdm-Signature` over the exact body (or, behind a TLS-terminating proxy, the client
 * certificate the proxy forwards), issued by our SCEP CA, known and not revoked. Failures are 400 or 403
 * with a logged reason, never 401: for some enrollment types a 401 unenrolls the device (PROTOCOL.md s. 8).
 *
 * The user: PROTOCOL.md section 4. iOS sends `Authorization: Bearer <token>` on every request, macOS only
 * on the user channel. A token that no longer stands for a signed-in user (revoked, expired, its user
 * deactivated, or older than REAUTH_AFTER) asks for a re-authentication: 401 with the enroll endpoint's
 * challenge, after which the device comes back with a fresh token of the same user. A token of someone
 * else is not a stale sign-in but a wrong one: 403.
 *
 * A request without a token (the macOS device channel) is never answered 401: Apple does not send the
 * token there, so the device has no sign-in to redo on that channel, and for other enrollment types a 401
 * has historically meant "unenroll". The same conditions instead put the channel on hold: it is answered
 * 200 and gets no command until the user signs in again, which is asked for on the user channel (the one
 * that carries the token). A first Authenticate on hold is refused with 403: no enrollment starts for a
 * sign-in that no longer stands.
 */
import type { X509Certificate } from 'node:crypto'
import type { Config } from '../config/index.js'
import { ForbiddenError } from '../errors.js'
import { fingerprintOf } from '../pki/certificate.js'
import { hashSecret, MAX_SECRET_LENGTH } from '../pki/secrets.js'
import { certificateFromProxyHeader, checkIssuedByCa, DeviceIdentityError, verifyMdmSignature } from '../pki/mdm-signature.js'
import type { Db, Sql } from '../storage/database.js'
import { grantCreatedAt } from '../storage/oauth2-grants.js'
import { loadDeviceContext, type DeviceContext } from '../storage/device-context.js'
import type { AccessToken, ContextToken } from '../storage/types.js'
import { findAccessTokenByHash, findAccessTokenWithUser, findUser } from '../storage/users.js'
import { storedCertificateRefusal } from './device-certificates.js'
import type { ServerKeys } from './keys.js'
import { bearerToken } from './tokens.js'

export interface IdentityInput {
  /** The `Mdm-Signature` header. */
  mdmSignature?: string
  /** The proxy's client-certificate header (MDM_CLIENT_CERT_HEADER), when configured and sent. */
  clientCertificate?: string
  /** The exact body bytes the signature covers. */
  body: Uint8Array
  /** The body is not sent again (a command's result): its signature is not worth remembering. */
  once?: boolean
  /** The Authorization header: the context holds the token it presents. */
  authorization?: string
}

/**
 * Proves the device and reads what the request is decided on, in one round trip (storage/device-context):
 * the stored certificate that identifies the device, its enrollment and channels, the presented token.
 * With a proxy-forwarded client certificate, a `Mdm-Signature` sent as well must be by that same
 * certificate.
 */
export async function identifyDevice(deps: { sql: Sql; keys: ServerKeys }, input: IdentityInput, now: Date): Promise<DeviceContext> {
  let certificate: X509Certificate
  if (input.clientCertificate) {
    certificate = certificateFromProxyHeader(input.clientCertificate)
    if (input.mdmSignature) {
      const signer = verifyMdmSignature(input.mdmSignature, input.body, { once: input.once })
      if (fingerprintOf(signer) !== fingerprintOf(certificate)) {
        throw new DeviceIdentityError('Mdm-Signature is by another certificate than the TLS client certificate')
      }
    }
  } else {
    certificate = verifyMdmSignature(input.mdmSignature, input.body, { once: input.once })
  }
  checkIssuedByCa(certificate, deps.keys.scepCa.certificate, now)
  const context = await loadDeviceContext(deps.sql, fingerprintOf(certificate), presentedTokenHash(input.authorization))
  if (!context) throw new DeviceIdentityError('the signing certificate is not one this server issued (not in device_certificates)')
  const refusal = storedCertificateRefusal(context.certificate, now)
  if (refusal) throw new DeviceIdentityError(`the signing certificate is ${refusal.replace(/_/g, ' ')}`)
  return context
}

/** The hash under which the presented bearer token would be stored; null when none (or no usable one) was sent. */
export function presentedTokenHash(authorization: string | undefined): Uint8Array<ArrayBuffer> | null {
  const value = authorization === undefined ? undefined : bearerToken(authorization)
  return value && value.length <= MAX_SECRET_LENGTH ? hashSecret(value) : null
}

/** Why the device must sign the user in again; logged, never shown. */
export type ReauthReason =
  | 'not_a_bearer_token'
  | 'unknown_token'
  | 'token_revoked'
  | 'token_expired'
  | 'user_inactive'
  | 'enrollment_window_over'
  | 'reauthentication_due'

/** The user side of an enrollment (or, before the first Authenticate, of the certificate). */
export interface UserBinding {
  userId: string
  teamId: string
  /** The token the device last presented, or the one the certificate was issued for. */
  currentAccessTokenId: string | null
  /** When the user last signed in interactively behind that token. */
  signedInAt: Date
}

export type BearerDecision =
  /**
   * `presented`: a bearer token was sent and accepted; the enrollment should remember it. `hold`: no token
   * was sent (macOS device channel) and the sign-in behind the enrollment no longer stands: answer 200,
   * deliver no command.
   */
  | { ok: true; presented?: { tokenId: string; signedInAt: Date }; hold?: ReauthReason }
  | { ok: false; reason: ReauthReason }

export interface BearerDeps {
  db: Db
  config: Config
}

/**
 * What the bearer rules read, as storage/device-context loads it in the request's one query (or
 * `bearerFacts` for the requests that are not on that path).
 */
export interface BearerFacts {
  /** The presented token by its hash; null when none was presented or no token has that hash. */
  presented: { token: ContextToken; userActive: boolean; signedInAt: Date } | null
  /** The binding's current token with its user's state; null when the binding has none. */
  current: { token: ContextToken; userActive: boolean } | null
  /** Whether the binding's user is active (null: the user no longer exists). */
  userActive: boolean | null
}

/** The facts of an enrollment's request from its context. */
export function contextFacts(context: DeviceContext): BearerFacts {
  const p = context.presented
  return {
    presented: p ? { token: p.token, userActive: p.userActive, signedInAt: signedInTime(p.token, p.grantCreatedAt) } : null,
    current: context.current,
    userActive: context.userActive,
  }
}

/** The same facts read one row at a time (Authenticate, whose binding is the certificate's). */
export async function bearerFacts(db: Db, binding: UserBinding, authorization: string | undefined): Promise<BearerFacts> {
  const hash = presentedTokenHash(authorization)
  const token = hash ? await findAccessTokenByHash(db, hash) : null
  const current = binding.currentAccessTokenId ? await findAccessTokenWithUser(db, binding.currentAccessTokenId) : null
  // The binding's own user matters only when it has no current token (decideBearer).
  const user = current ? current.user : await findUser(db, binding.userId)
  return {
    presented: token ? { token, userActive: token.user.active, signedInAt: await interactiveSignInTime(db, token) } : null,
    current: current ? { token: current, userActive: current.user.active } : null,
    userActive: user ? user.active : null,
  }
}

/**
 * The bearer rules for one request. `firstAuthenticate`: the enrollment does not exist yet, and the sign-in
 * behind it must be within ENROLLMENT_WINDOW (a certificate cannot be kept and enrolled with days later).
 */
export function decideBearer(
  config: Config,
  binding: UserBinding,
  authorization: string | undefined,
  facts: BearerFacts,
  now: Date,
  options: { firstAuthenticate?: boolean } = {},
): BearerDecision {
  const reauthAfter = config.checkin.reauthAfterSeconds
  if (authorization === undefined) {
    // macOS device channel: no token is sent; the certificate's binding decides. What would ask for a
    // sign-in with a token only holds the channel here (see the top of this file).
    const userActive = facts.current ? facts.current.userActive : facts.userActive
    const age = now.getTime() - binding.signedInAt.getTime()
    let hold: ReauthReason | undefined
    if (!userActive) hold = 'user_inactive'
    else if (facts.current?.token.revokedAt) hold = 'token_revoked'
    else if (options.firstAuthenticate && age >= config.enrollmentWindowSeconds * 1000) hold = 'enrollment_window_over'
    else if (reauthAfter && age >= reauthAfter * 1000) hold = 'reauthentication_due'
    if (hold && options.firstAuthenticate) {
      throw new ForbiddenError(`no enrollment starts without a token for a sign-in that no longer stands (${hold})`, { code: 'sign_in_required' })
    }
    return { ok: true, hold }
  }
  if (!bearerToken(authorization)) return { ok: false, reason: 'not_a_bearer_token' }
  const presented = facts.presented
  if (!presented) return { ok: false, reason: 'unknown_token' }
  const { token } = presented
  if (token.userId !== binding.userId || token.teamId !== binding.teamId) {
    throw new ForbiddenError(`the bearer token belongs to another ${token.userId !== binding.userId ? 'user' : 'team'} than this enrollment`, { code: 'bearer_token_mismatch' })
  }
  if (token.revokedAt) return { ok: false, reason: 'token_revoked' }
  if (!presented.userActive) return { ok: false, reason: 'user_inactive' }
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'token_expired' }
  const age = now.getTime() - presented.signedInAt.getTime()
  if (options.firstAuthenticate && age >= config.enrollmentWindowSeconds * 1000) return { ok: false, reason: 'enrollment_window_over' }
  if (reauthAfter && age >= reauthAfter * 1000) return { ok: false, reason: 'reauthentication_due' }
  return { ok: true, presented: { tokenId: token.id, signedInAt: presented.signedInAt } }
}

/** `decideBearer` on facts read one row at a time. */
export async function checkBearer(
  deps: BearerDeps,
  binding: UserBinding,
  authorization: string | undefined,
  now: Date,
  options: { firstAuthenticate?: boolean } = {},
): Promise<BearerDecision> {
  return decideBearer(deps.config, binding, authorization, await bearerFacts(deps.db, binding, authorization), now, options)
}

/**
 * When the user last signed in interactively behind `token`: its own creation for web sign-in, the
 * grant's for an OAuth 2 token (a refresh is not a new sign-in).
 */
export async function interactiveSignInTime(db: Db, token: AccessToken): Promise<Date> {
  return signedInTime(token, token.oauth2GrantId ? await grantCreatedAt(db, token.oauth2GrantId) : null)
}

function signedInTime(token: ContextToken, grantCreatedAt: Date | null): Date {
  return token.oauth2GrantId && grantCreatedAt ? grantCreatedAt : token.createdAt
}
