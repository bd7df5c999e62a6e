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
import { certificateFingerprint } from '../pki/certificate.js'
import { certificateFromProxyHeader, checkIssuedByCa, DeviceIdentityError, verifyMdmSignature } from '../pki/mdm-signature.js'
import type { Db } from '../storage/database.js'
import { grantCreatedAt } from '../storage/oauth2-grants.js'
import type { AccessToken, DeviceCertificate } from '../storage/types.js'
import { findAccessTokenWithUser, findUser } from '../storage/users.js'
import { findDeviceCertificate, storedCertificateRefusal } from './device-certificates.js'
import type { ServerKeys } from './keys.js'
import { bearerToken, findAccessToken } from './tokens.js'

export interface IdentityInput {
  /** The `Mdm-Signature` header. */
  mdmSignature?: string
  /** The proxy's client-certificate header (MDM_CLIENT_CERT_HEADER), when configured and sent. */
  clientCertificate?: string
  /** The exact body bytes the signature covers. */
  body: Uint8Array
}

/**
 * The stored certificate that identifies the device. With a proxy-forwarded client certificate, a
 * `Mdm-Signature` sent as well must be by that same certificate.
 */
export async function identifyDevice(deps: { db: Db; keys: ServerKeys }, input: IdentityInput, now: Date): Promise<DeviceCertificate> {
  let certificate: X509Certificate
  if (input.clientCertificate) {
    certificate = certificateFromProxyHeader(input.clientCertificate)
    if (input.mdmSignature) {
      const signer = verifyMdmSignature(input.mdmSignature, input.body)
      if (certificateFingerprint(signer.raw) !== certificateFingerprint(certificate.raw)) {
        throw new DeviceIdentityError('Mdm-Signature is by another certificate than the TLS client certificate')
      }
    }
  } else {
    certificate = verifyMdmSignature(input.mdmSignature, input.body)
  }
  checkIssuedByCa(certificate, deps.keys.scepCa.certificate, now)
  const stored = await findDeviceCertificate(deps.db, certificateFingerprint(certificate.raw))
  if (!stored) throw new DeviceIdentityError('the signing certificate is not one this server issued (not in device_certificates)')
  const refusal = storedCertificateRefusal(stored, now)
  if (refusal) throw new DeviceIdentityError(`the signing certificate is ${refusal.replace(/_/g, ' ')}`)
  return stored
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
 * The bearer rules for one request. `firstAuthenticate`: the enrollment does not exist yet, and the sign-in
 * behind it must be within ENROLLMENT_WINDOW (a certificate cannot be kept and enrolled with days later).
 */
export async function checkBearer(
  deps: BearerDeps,
  binding: UserBinding,
  authorization: string | undefined,
  now: Date,
  options: { firstAuthenticate?: boolean } = {},
): Promise<BearerDecision> {
  const { db, config } = deps
  const reauthAfter = config.checkin.reauthAfterSeconds
  if (authorization === undefined) {
    // macOS device channel: no token is sent; the certificate's binding decides. What would ask for a
    // sign-in with a token only holds the channel here (see the top of this file).
    const current = binding.currentAccessTokenId ? await findAccessTokenWithUser(db, binding.currentAccessTokenId) : null
    const user = current?.user ?? (await findUser(db, binding.userId))
    const age = now.getTime() - binding.signedInAt.getTime()
    let hold: ReauthReason | undefined
    if (!user?.active) hold = 'user_inactive'
    else if (current?.revokedAt) hold = 'token_revoked'
    else if (options.firstAuthenticate && age >= config.enrollmentWindowSeconds * 1000) hold = 'enrollment_window_over'
    else if (reauthAfter && age >= reauthAfter * 1000) hold = 'reauthentication_due'
    if (hold && options.firstAuthenticate) {
      throw new ForbiddenError(`no enrollment starts without a token for a sign-in that no longer stands (${hold})`, { code: 'sign_in_required' })
    }
    return { ok: true, hold }
  }
  const value = bearerToken(authorization)
  if (!value) return { ok: false, reason: 'not_a_bearer_token' }
  const token = await findAccessToken(db, value)
  if (!token) return { ok: false, reason: 'unknown_token' }
  if (token.userId !== binding.userId || token.teamId !== binding.teamId) {
    throw new ForbiddenError(`the bearer token belongs to another ${token.userId !== binding.userId ? 'user' : 'team'} than this enrollment`, { code: 'bearer_token_mismatch' })
  }
  if (token.revokedAt) return { ok: false, reason: 'token_revoked' }
  if (!token.user.active) return { ok: false, reason: 'user_inactive' }
  if (token.expiresAt && token.expiresAt.getTime() <= now.getTime()) return { ok: false, reason: 'token_expired' }
  const signedInAt = await interactiveSignInTime(db, token)
  const age = now.getTime() - signedInAt.getTime()
  if (options.firstAuthenticate && age >= config.enrollmentWindowSeconds * 1000) return { ok: false, reason: 'enrollment_window_over' }
  if (reauthAfter && age >= reauthAfter * 1000) return { ok: false, reason: 'reauthentication_due' }
  return { ok: true, presented: { tokenId: token.id, signedInAt } }
}

/**
 * When the user last signed in interactively behind `token`: its own creation for web sign-in, the
 * grant's for an OAuth 2 token (a refresh is not a new sign-in).
 */
export async function interactiveSignInTime(db: Db, token: AccessToken): Promise<Date> {
  if (!token.oauth2GrantId) return token.createdAt
  return (await grantCreatedAt(db, token.oauth2GrantId)) ?? token.createdAt
}
