/**
 * The check-in protocol (PROTOCOL.md sections 4, 8, 9): one method per MessageType, as in nanomdm's
 * service interface; the command channel's reports have their own service (commands.ts). The route has
 * already proved the device's identity (`identify`) and parsed the message; every method then finds the
 * enrollment the certificate is bound to, checks that the message is about that enrollment, applies the
 * bearer rules (never to CheckOut) and does its work.
 *
 * Refusals are thrown: 400 (a message this server does not serve or that contradicts the enrollment), 403
 * (the certificate has no such enrollment: not authenticated, another EnrollmentID, checked out, another
 * user's token). A re-authentication is an answer, not an error: the route sends 401 with `headers`.
 */
import { BadRequestError, ForbiddenError, NotFoundError } from '../errors.js'
import { MAID_SERVICE_TYPE } from '../abm/maid-jwt.js'
import { channelId, isDeviceEnrollment, type Authenticate, type CheckinMessage, type CheckOut, type DeclarativeManagement, type GetToken, type TokenUpdate } from '../protocol/checkin.js'
import { parseDeclarativeEndpoint } from '../protocol/declarations.js'
import { modelFamilyOfProduct } from '../protocol/discovery.js'
import {
  checkOutEnrollment,
  countUserChannels,
  createEnrollment,
  findChannel,
  enrollmentForCertificate,
  liveEnrollment,
  storeTokenUpdate,
  updateAuthenticated,
  withEnrollmentLock,
  type DeviceReport,
} from '../storage/enrollments.js'
import type { Tx } from '../storage/database.js'
import { findProfile } from '../storage/profiles.js'
import { findTeam } from '../storage/teams.js'
import type { DeviceContext } from '../storage/device-context.js'
import type { MdmEnrollment } from '../storage/types.js'
import { findAccessTokenById } from '../storage/users.js'
import type { DeclarationService } from './declarations.js'
import { holdNote, refuse, type MdmAccess, type MdmAnswer, type MdmDeps, type MdmRequest } from './mdm-access.js'
import { checkBearer, identifyDevice, interactiveSignInTime, type IdentityInput, type UserBinding } from './mdm-identity.js'

export type { MdmAnswer as CheckinAnswer, MdmRequest } from './mdm-access.js'
type CheckinAnswer = MdmAnswer

/**
 * User channels per enrollment. Only a Mac has them (one per local user that logs in, and user
 * enrollment manages only the user who enrolled); without a cap a device could create rows without end
 * by sending TokenUpdates with new EnrollmentUserIDs (SECURITY.md row 27).
 */
export const MAX_USER_CHANNELS = 8

export interface CheckinService {
  /** Proves the device and reads what its request is decided on (storage/device-context). */
  identify(input: IdentityInput, now?: Date): Promise<DeviceContext>
  checkin(request: MdmRequest<CheckinMessage>): Promise<CheckinAnswer>
  authenticate(request: MdmRequest<Authenticate>): Promise<CheckinAnswer>
  tokenUpdate(request: MdmRequest<TokenUpdate>): Promise<CheckinAnswer>
  checkOut(request: MdmRequest<CheckOut>): Promise<CheckinAnswer>
  declarativeManagement(request: MdmRequest<DeclarativeManagement>): Promise<CheckinAnswer>
  getToken(request: MdmRequest<GetToken>): Promise<CheckinAnswer>
  userAuthenticate(request: MdmRequest<CheckinMessage>): Promise<CheckinAnswer>
  /** SetBootstrapToken, GetBootstrapToken, ReturnToService: device-enrollment messages. */
  unsupported(request: MdmRequest<CheckinMessage>): Promise<CheckinAnswer>
}

/** Tokens GetToken hands out, by TokenServiceType; undefined from one: the server does not serve that type now. */
export interface CheckinTokens {
  /** com.apple.maid: a JWT (services/abm.ts), while ABM is connected and MAID_TOKENS is on. */
  maid?(now: Date): Promise<{ jwt: string; jti: string } | undefined>
}

export function createCheckinService(deps: MdmDeps, access: MdmAccess, declarations: DeclarationService, tokens: CheckinTokens = {}): CheckinService {
  const { db } = deps
  const { reauthenticate, boundEnrollment, live, admit, bindingOf, seenUpdate, recordSeen } = access

  function requireDeviceChannel(message: { MessageType: string; EnrollmentUserID?: string }): void {
    // https://developer.apple.com/documentation/devicemanagement/authenticate: device channel only.
    if (message.EnrollmentUserID) throw new BadRequestError(`${message.MessageType} is a device-channel message; it carries an EnrollmentUserID`, { code: 'invalid_checkin' })
  }

  const service: CheckinService = {
    identify: (input, now = new Date()) => identifyDevice(deps, input, now),

    checkin(request) {
      const { message } = request
      switch (message.MessageType) {
        case 'Authenticate':
          return service.authenticate({ ...request, message })
        case 'TokenUpdate':
          return service.tokenUpdate({ ...request, message })
        case 'CheckOut':
          return service.checkOut({ ...request, message })
        case 'DeclarativeManagement':
          return service.declarativeManagement({ ...request, message })
        case 'GetToken':
          return service.getToken({ ...request, message })
        case 'UserAuthenticate':
          return service.userAuthenticate(request)
        default:
          return service.unsupported(request)
      }
    },

    /**
     * Binds certificate, EnrollmentID, user, team and token. Devices retry, so the same certificate and
     * EnrollmentID again is a success that changes nothing but the reported versions.
     */
    async authenticate(request) {
      const { device, message } = request
      const now = request.now ?? new Date()
      requireDeviceChannel(message)
      const existing = await enrollmentForCertificate(db, device)
      if (existing) return authenticateAgain(request, existing, now)

      // The topic is the one the enrollment profile was issued with (it can never change).
      const profile = device.enrollmentProfileId ? await findProfile(db, device.enrollmentProfileId) : null
      if (profile && profile.topic !== message.Topic) throw new BadRequestError('Topic is not the one of the enrollment profile', { code: 'topic_mismatch' })
      // A device enrolled with EnrollmentMode ADDE names itself by UDID, with BYOD by EnrollmentID.
      const deviceEnrolled = isDeviceEnrollment(message)
      if (profile && (profile.enrollmentMode === 'ADDE') !== deviceEnrolled) {
        throw new BadRequestError(
          `the enrollment profile is for ${profile.enrollmentMode === 'ADDE' ? 'device enrollment (UDID)' : 'user enrollment (EnrollmentID)'} but the device sent ${deviceEnrolled ? 'a UDID' : 'an EnrollmentID'}`,
          { code: 'enrollment_type_mismatch' },
        )
      }

      const issuedFor = await findAccessTokenById(db, device.accessTokenId)
      if (!issuedFor) throw refuse(`the access token certificate ${device.id} was issued for no longer exists`, 'not_authenticated')
      const binding: UserBinding = { userId: device.userId, teamId: device.teamId, currentAccessTokenId: issuedFor.id, signedInAt: await interactiveSignInTime(db, issuedFor) }
      const decision = await checkBearer(deps, binding, request.authorization, now, { firstAuthenticate: true })
      if (!decision.ok) return reauthenticate(device.teamId, decision.reason)

      const created = await createEnrollment(db, {
        enrollmentId: message.EnrollmentID,
        certificate: device,
        currentAccessTokenId: decision.presented?.tokenId ?? issuedFor.id,
        signedInAt: decision.presented?.signedInAt ?? binding.signedInAt,
        topic: message.Topic,
        device: deviceReport(message),
        enrollmentType: deviceEnrolled ? 'device' : 'user',
        now,
      })
      if (created) return { kind: 'ok', enrollment: created.id, note: 'enrollment created' }
      // A unique index refused it: a concurrent Authenticate bound this certificate first (then this is a
      // retry), or another certificate holds the EnrollmentID.
      const raced = await enrollmentForCertificate(db, device)
      if (raced) return authenticateAgain(request, raced, now)
      const holder = await liveEnrollment(db, message.EnrollmentID)
      throw refuse(`EnrollmentID belongs to enrollment ${holder?.id ?? '(gone)'} of another certificate`, 'enrollment_id_taken')
    },

    async tokenUpdate(request) {
      const now = request.now ?? new Date()
      const { enrollment, decision } = await admit(request, now)
      if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      const { message } = request
      if (message.Topic !== enrollment.topic) throw new BadRequestError('Topic is not the one this enrollment authenticated with', { code: 'topic_mismatch' })
      return withEnrollmentLock(db, enrollment.id, async (tx, current) => {
        live(current)
        if (message.EnrollmentUserID) await admitUserChannel(tx, current, channelId(message))
        const channel = await storeTokenUpdate(
          tx,
          current,
          {
            channelId: channelId(message),
            enrollmentUserId: message.EnrollmentUserID,
            userShortName: message.UserShortName,
            userLongName: message.UserLongName,
            topic: message.Topic,
            pushToken: Buffer.from(message.Token).toString('hex'),
            pushMagic: message.PushMagic,
            awaitingConfiguration: message.AwaitingConfiguration ?? false,
          },
          seenUpdate(current, decision, now),
        )
        return { kind: 'ok', enrollment: current.id, note: holdNote(decision) ?? (current.status === 'authenticated' && !channel.enrollmentUserId ? 'enrollment active' : undefined) }
      })
    },

    /** Always 200 for the enrollment's own certificate: no bearer rules, and repeats change nothing. */
    async checkOut(request) {
      const now = request.now ?? new Date()
      const { enrollment } = await boundEnrollment(request)
      return withEnrollmentLock(db, enrollment.id, async (tx, current) => {
        if (current.status === 'checked_out') return { kind: 'ok', enrollment: current.id, note: 'already checked out' }
        await checkOutEnrollment(tx, current.id, now, current.status === 'removed')
        return { kind: 'ok', enrollment: current.id, note: current.status === 'removed' ? 'removed enrollment checked out: the device unenrolled' : 'checked out' }
      })
    },

    /** The team's declaration set (services/declarations.ts), PROTOCOL.md section 9. */
    async declarativeManagement(request) {
      const now = request.now ?? new Date()
      const { enrollment, decision, channels } = await admit(request, now)
      if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      await recordSeen(enrollment, undefined, decision, now)
      const team = await findTeam(db, enrollment.teamId)
      if (!team) throw new Error(`team ${enrollment.teamId} of enrollment ${enrollment.id} no longer exists`)
      const endpoint = parseDeclarativeEndpoint(request.message.Endpoint)
      switch (endpoint.kind) {
        case 'tokens':
          return { kind: 'ok', enrollment: enrollment.id, body: { kind: 'json', value: await declarations.tokens(team, enrollment.authenticatedAt) } }
        case 'declaration-items':
          return { kind: 'ok', enrollment: enrollment.id, body: { kind: 'json', value: await declarations.items(team) } }
        case 'status': {
          const channel = channels.find((c) => c.channelId === channelId(request.message))
          if (channel) await declarations.storeStatus(channel.id, request.message.Data, now)
          // "Get the device status": the server answers 204 No Content.
          return { kind: 'ok', enrollment: enrollment.id, body: { kind: 'empty', status: 204 } }
        }
        case 'declaration': {
          const found = await declarations.find(team, endpoint.type, endpoint.identifier)
          if (found) return { kind: 'ok', enrollment: enrollment.id, body: { kind: 'json', value: found } }
          throw new NotFoundError(`no ${endpoint.type} declaration ${JSON.stringify(endpoint.identifier.slice(0, 64))}`, { publicMessage: 'No such declaration' })
        }
        case 'unknown':
          throw new NotFoundError(`unknown declarative management endpoint ${JSON.stringify(request.message.Endpoint.slice(0, 64))}`, { publicMessage: 'No such declarative management endpoint' })
      }
    },

    /**
     * https://developer.apple.com/documentation/devicemanagement/get-token. `com.apple.maid` (Managed Apple
     * Account access management) is answered `{TokenData: <the JWT's bytes>}` while ABM is connected and
     * MAID_TOKENS is on (profiles issued since then offer `com.apple.mdm.token`); for a service type the
     * server does not serve, Apple asks for 400.
     *
     * Only an enrollment in good standing gets a token. Apple's page says nothing of refusals, so: a removed
     * enrollment gets the documented unenroll answer (403 com.apple.unrecognized.device, from `admit`); a
     * user an administrator revoked gets 403 `user_revoked`, token or not (a sign-in cannot help them); a
     * request without a token whose sign-in no longer stands (the macOS device channel on hold) 403
     * `sign_in_required`, never 401; a stale or expired token the usual 401 re-authentication, after
     * which the device asks again. Without a token, Apple's identity service refuses the sign-in.
     */
    async getToken(request) {
      const now = request.now ?? new Date()
      const { enrollment, decision, context } = await admit(request, now)
      const type = request.message.TokenServiceType
      if (type === MAID_SERVICE_TYPE && tokens.maid) {
        if (!context.userActive) {
          throw new ForbiddenError(`GetToken ${MAID_SERVICE_TYPE} refused: user ${enrollment.userId} of enrollment ${enrollment.id} was revoked`, { code: 'user_revoked', publicMessage: 'The user of this enrollment was revoked' })
        }
        if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
        if (decision.hold) {
          throw new ForbiddenError(`GetToken ${MAID_SERVICE_TYPE} refused: the sign-in behind enrollment ${enrollment.id} no longer stands (${decision.hold})`, { code: 'sign_in_required', publicMessage: 'The user must sign in again' })
        }
        const token = await tokens.maid(now)
        if (token) {
          await recordSeen(enrollment, undefined, decision, now)
          return { kind: 'ok', enrollment: enrollment.id, body: { kind: 'plist', value: { TokenData: Buffer.from(token.jwt, 'utf8') } }, note: `${MAID_SERVICE_TYPE} token issued (jti ${token.jti})` }
        }
      }
      if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      throw new BadRequestError(`GetToken for ${JSON.stringify(request.message.TokenServiceType.slice(0, 64))} is not supported`, { code: 'unsupported_token_service', publicMessage: 'This TokenServiceType is not supported' })
    },

    /**
     * A macOS network or mobile user logging in. User enrollment manages the one user who enrolled, so
     * this server declines: 410 to the first request, after which the client sends nothing more for that
     * user's session. https://developer.apple.com/documentation/devicemanagement/user-authenticate and
     * "Managing MDM Devices and Users in macOS" ("If the server won't manage a network user, it returns a
     * 410 HTTP status code").
     */
    async userAuthenticate(request) {
      const { enrollment, decision } = await admit(request, request.now ?? new Date())
      if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      return { kind: 'gone', enrollment: enrollment.id }
    },

    /** Apple's schema forbids these under user enrollment (mdm/checkin/*.yaml `userenrollment: forbidden`). */
    async unsupported(request) {
      const { enrollment, decision } = await admit(request, request.now ?? new Date())
      if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      throw new BadRequestError(`${request.message.MessageType} is not supported for user enrollments`, { code: 'unsupported_message' })
    },

  }

  /**
   * A TokenUpdate on a user channel: only a Mac has user channels (Authenticate's ProductName), and a
   * new one only while the enrollment has fewer than MAX_USER_CHANNELS. Called under the enrollment lock.
   */
  async function admitUserChannel(tx: Tx, enrollment: MdmEnrollment, channel: string): Promise<void> {
    if (modelFamilyOfProduct(enrollment.productName ?? '') !== 'Mac') {
      throw new BadRequestError(`enrollment ${enrollment.id} (${enrollment.productName ?? 'no ProductName'}) is not a Mac: user channels exist only on macOS`, { code: 'user_channel_not_allowed', publicMessage: 'User channels exist only on macOS' })
    }
    if (await findChannel(tx, enrollment.id, channel)) return
    if ((await countUserChannels(tx, enrollment.id)) >= MAX_USER_CHANNELS) {
      throw refuse(`enrollment ${enrollment.id} has ${MAX_USER_CHANNELS} user channels already`, 'too_many_user_channels')
    }
  }

  async function authenticateAgain(request: MdmRequest<Authenticate>, enrollment: MdmEnrollment, now: Date): Promise<CheckinAnswer> {
    const { message } = request
    if (enrollment.enrollmentId !== message.EnrollmentID) {
      throw refuse(`certificate ${request.device.id} already authenticated enrollment ${enrollment.id} with another EnrollmentID`, 'certificate_bound')
    }
    if (enrollment.status === 'checked_out') throw refuse(`enrollment ${enrollment.id} is checked out; its certificate cannot start another`, 'checked_out')
    live(enrollment)
    if (message.Topic !== enrollment.topic) throw new BadRequestError('Topic is not the one this enrollment authenticated with', { code: 'topic_mismatch' })
    const decision = await checkBearer(deps, bindingOf(enrollment), request.authorization, now)
    if (!decision.ok) return reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
    await withEnrollmentLock(db, enrollment.id, async (tx, current) => {
      live(current)
      await updateAuthenticated(tx, current.id, deviceReport(message), seenUpdate(current, decision, now))
    })
    return { kind: 'ok', enrollment: enrollment.id, note: 'repeated Authenticate' }
  }

  return service
}

/** What Authenticate says about the device (PROTOCOL.md section 8: macOS adds DeviceName, Model, ModelName). */
function deviceReport(message: Authenticate): DeviceReport {
  const info: Record<string, string> = {}
  for (const key of ['DeviceName', 'Model', 'ModelName'] as const) {
    const value = message[key]
    if (typeof value === 'string') info[key] = value
  }
  const device = isDeviceEnrollment(message)
  return {
    productName: message.ProductName,
    osVersion: message.OSVersion,
    buildVersion: message.BuildVersion,
    info,
    // Device enrollment only: user enrollment never reveals them (PROTOCOL.md section 8).
    ...(device ? { udid: message.EnrollmentID, serialNumber: message.SerialNumber } : {}),
  }
}
