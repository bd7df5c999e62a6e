/**
 * What the check-in service and the command service share (PROTOCOL.md sections 4 and 8): which
 * enrollment a signing certificate belongs to, the bearer rules of account-driven enrollment, and the
 * answers both channels give. The route has already proved the device's identity (`identifyDevice`) and
 * parsed the message.
 */
import type { Config } from '../config/index.js'
import { ForbiddenError } from '../errors.js'
import { isDeviceEnrollment } from '../protocol/checkin.js'
import type { PlistDict } from '../protocol/plist.js'
import type { Client, Sql } from '../storage/database.js'
import { loadDeviceContext, type ContextCertificate, type ContextChannel, type ContextEnrollment, type DeviceContext } from '../storage/device-context.js'
import { enrollmentForCertificate, recordSeen, type SeenUpdate } from '../storage/enrollments.js'
import { findTeam } from '../storage/teams.js'
import type { Team } from '../storage/types.js'
import type { ServerKeys } from './keys.js'
import { contextFacts, decideBearer, presentedTokenHash, type BearerDecision, type ReauthReason, type UserBinding } from './mdm-identity.js'

export interface MdmDeps {
  db: Client
  /** Plain SQL for the statements every request runs (storage/device-context, the next command). */
  sql: Sql
  config: Config
  keys: ServerKeys
  /** The enroll endpoint's 401 headers for a team (EnrollmentService.challenge). */
  challenge(team: Team): Promise<Record<string, string>>
}

/** A request as the route hands it over: who signed it, what it says, and its Authorization header. */
export interface MdmRequest<M> {
  device: ContextCertificate
  /** What `identify` read with the certificate (its enrollment, channels, the presented token); read again when absent. */
  context?: DeviceContext
  message: M
  /** The plist exactly as the device sent it (the message names the device EnrollmentID either way). */
  raw?: PlistDict
  authorization?: string
  now?: Date
}

/**
 * What the route writes back. `empty`: no body (200, or 204 where Apple asks for it); `json`: declarative
 * management documents; `plist`: the next command, or GetToken's answer.
 */
export type ReplyBody = { kind: 'empty'; status: 200 | 204 } | { kind: 'json'; value: unknown } | { kind: 'plist'; value: PlistDict }

export type MdmAnswer =
  | { kind: 'ok'; enrollment: string; body?: ReplyBody; note?: string }
  | { kind: 'reauthenticate'; enrollment?: string; headers: Record<string, string>; reason: ReauthReason }
  /** UserAuthenticate: the server does not manage that user (HTTP 410). */
  | { kind: 'gone'; enrollment: string }

/**
 * What a device is told when its request does not fit its enrollment; the log line gets the full reason
 * with the row ids (SECURITY.md row 29).
 */
const REFUSALS: Record<string, string> = {
  not_authenticated: 'This identity has not sent Authenticate',
  enrollment_mismatch: 'The message names another enrollment than the one of this identity',
  checked_out: 'This enrollment is checked out',
  certificate_bound: 'This identity belongs to an enrollment with another EnrollmentID',
  enrollment_id_taken: 'This EnrollmentID belongs to another identity',
  not_active: 'This channel has not sent TokenUpdate',
  too_many_user_channels: 'This enrollment has as many user channels as it may',
}

export const refuse = (message: string, code = 'enrollment_mismatch') =>
  new ForbiddenError(message, { code, publicMessage: REFUSALS[code] ?? 'This request does not fit the enrollment of this identity' })

/**
 * The answer that makes a device unenroll: 403 with `{"code": "com.apple.unrecognized.device"}` (Apple,
 * iOS 17 / macOS 14 and later), sent to an enrollment an administrator removed. Never a bare 401, which
 * for account-driven enrollment asks for a sign-in instead.
 */
export class UnrecognizedDeviceError extends ForbiddenError {
  static readonly CODE = 'com.apple.unrecognized.device'
  constructor(enrollmentId: string) {
    super(`enrollment ${enrollmentId} was removed by an administrator: the device is told to unenroll`, { code: UnrecognizedDeviceError.CODE, publicMessage: 'Unrecognized device' })
  }
}

/** The log note of a request on hold (no token, and the sign-in behind the enrollment no longer stands). */
export function holdNote(decision: BearerDecision): string | undefined {
  return decision.ok && decision.hold ? `no command delivered until the user signs in again on the user channel (${decision.hold})` : undefined
}

/** What `admit` found: the enrollment the request is about, the bearer decision, and the context it was decided on. */
export interface Admitted {
  enrollment: ContextEnrollment
  decision: BearerDecision
  /** The enrollment's channels as the request found them, the device channel first. */
  channels: ContextChannel[]
  context: DeviceContext
}

export interface MdmAccess {
  /** The 401 answer that asks the device to sign the user in again. */
  reauthenticate(teamId: string, reason: ReauthReason, enrollment?: string): Promise<MdmAnswer>
  /** The request's context: the route's, or read now for the request's certificate and token. */
  contextOf(request: MdmRequest<unknown>): Promise<DeviceContext>
  /** The enrollment the signing certificate belongs to, which the message must name. */
  boundEnrollment(request: MdmRequest<{ EnrollmentID: string }>): Promise<{ enrollment: ContextEnrollment; context: DeviceContext }>
  /** Refuses a checked-out enrollment. */
  live(enrollment: ContextEnrollment): void
  /** The common path of every message but Authenticate and CheckOut: bound, live, bearer rules applied. */
  admit(request: MdmRequest<{ EnrollmentID: string }>, now: Date): Promise<Admitted>
  bindingOf(enrollment: ContextEnrollment): UserBinding
  /** What to store after the bearer rules accepted a request: the presented token becomes the current one. */
  seenUpdate(enrollment: ContextEnrollment, decision: Extract<BearerDecision, { ok: true }>, now: Date): SeenUpdate
  /**
   * Records that the enrollment (and `channel`) was seen: written only when the accepted token changed or
   * the stored time is older than LAST_SEEN_INTERVAL, so that most requests write nothing.
   */
  recordSeen(enrollment: ContextEnrollment, channel: ContextChannel | undefined, decision: Extract<BearerDecision, { ok: true }>, now: Date): Promise<void>
}

export function createMdmAccess(deps: MdmDeps): MdmAccess {
  const { db } = deps
  const intervalMs = deps.config.checkin.lastSeenIntervalSeconds * 1000
  const stale = (seen: Date, now: Date) => now.getTime() - seen.getTime() >= intervalMs
  const access: MdmAccess = {
    async reauthenticate(teamId, reason, enrollment) {
      const team = await findTeam(db, teamId)
      if (!team) throw new Error(`team ${teamId} of an enrollment no longer exists`)
      return { kind: 'reauthenticate', enrollment, headers: await deps.challenge(team), reason }
    },

    async contextOf(request) {
      if (request.context) return request.context
      const context = await loadDeviceContext(deps.sql, request.device.fingerprintSha256, presentedTokenHash(request.authorization))
      if (!context) throw refuse(`certificate ${request.device.id} no longer exists`, 'not_authenticated')
      return context
    },

    async boundEnrollment(request) {
      const { device, message } = request
      let context = await access.contextOf(request)
      if (!context.enrollment && device.renewedFromId) {
        // A renewed certificate's first request binds it to the enrollment of the one it renewed.
        if (await enrollmentForCertificate(db, device)) context = await access.contextOf({ ...request, context: undefined })
      }
      const enrollment = context.enrollment
      if (!enrollment) throw refuse(`certificate ${device.id} has not sent Authenticate`, 'not_authenticated')
      if (enrollment.enrollmentId !== message.EnrollmentID || (enrollment.enrollmentType === 'device') !== isDeviceEnrollment(message)) {
        throw refuse(`certificate ${device.id} belongs to enrollment ${enrollment.id}, not to the ${isDeviceEnrollment(message) ? 'UDID' : 'EnrollmentID'} in the message`)
      }
      return { enrollment, context }
    },

    live(enrollment) {
      if (enrollment.status === 'checked_out') throw refuse(`enrollment ${enrollment.id} is checked out`, 'checked_out')
      if (enrollment.status === 'removed') throw new UnrecognizedDeviceError(enrollment.id)
    },

    async admit(request, now) {
      const { enrollment, context } = await access.boundEnrollment(request)
      access.live(enrollment)
      const decision = decideBearer(deps.config, access.bindingOf(enrollment), request.authorization, contextFacts(context), now)
      return { enrollment, decision, channels: context.channels, context }
    },

    bindingOf(enrollment) {
      return { userId: enrollment.userId, teamId: enrollment.teamId, currentAccessTokenId: enrollment.currentAccessTokenId, signedInAt: enrollment.signedInAt }
    },

    seenUpdate(enrollment, decision, now) {
      const p = decision.presented
      if (!p) return { now }
      // The clock of REAUTH_AFTER never runs backwards because an older, still valid token was presented.
      const signedInAt = p.signedInAt > enrollment.signedInAt ? p.signedInAt : undefined
      return { now, currentAccessTokenId: p.tokenId !== enrollment.currentAccessTokenId ? p.tokenId : undefined, signedInAt }
    },

    async recordSeen(enrollment, channel, decision, now) {
      const update = access.seenUpdate(enrollment, decision, now)
      const enrollmentDue = update.currentAccessTokenId !== undefined || update.signedInAt !== undefined || stale(enrollment.lastSeenAt, now)
      const channelDue = channel !== undefined && stale(channel.lastSeenAt, now)
      if (enrollmentDue || channelDue) await recordSeen(db, { enrollmentId: enrollmentDue ? enrollment.id : undefined, channelId: channelDue ? channel.id : undefined }, update)
    },
  }
  return access
}
