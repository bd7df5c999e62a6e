/**
 * Storage of MDM enrollments, the certificates bound to them and their channels (tables mdm_enrollments,
 * mdm_enrollment_certificates, mdm_channels). The binding rules are unique indexes (see the migration);
 * this module turns their violations into answers instead of errors, and serialises the changes to one
 * enrollment with a row lock so that concurrent messages from one device apply one after the other.
 */
import type { Prisma } from '../generated/prisma/client.js'
import { OPEN_STATUSES } from './commands.js'
import type { Client, Db, Tx } from './database.js'
import type { ContextCertificate, MdmChannel, MdmEnrollment } from './types.js'

export type EnrollmentStatus = 'authenticated' | 'active' | 'checked_out' | 'removed'

/** What Authenticate said about the device. */
export interface DeviceReport {
  productName?: string
  osVersion?: string
  buildVersion?: string
  /** The other device fields, as sent (DeviceName, Model, ModelName). */
  info?: Record<string, string>
  /** Device enrollment only. */
  udid?: string
  serialNumber?: string
}

/** Renewals of renewals: a device renews before each expiry; far more than any enrollment lives through. */
const MAX_RENEWAL_DEPTH = 32

/** True for a unique-index violation, from the Prisma API (P2002) or a raw query (P2010 + adapter cause). */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: unknown; originalCode?: unknown } } } }
  if (e?.code === 'P2002') return true
  const cause = e?.meta?.driverAdapterError?.cause
  return cause?.kind === 'UniqueConstraintViolation' || cause?.originalCode === '23505'
}

/** The enrollment a certificate is bound to, or null. */
export async function enrollmentOfCertificate(db: Db, deviceCertificateId: string): Promise<MdmEnrollment | null> {
  const binding = await db.mdmEnrollmentCertificate.findUnique({ where: { deviceCertificateId }, include: { enrollment: true } })
  return binding?.enrollment ?? null
}

/**
 * The enrollment `cert` belongs to. A certificate the SCEP CA issued for a RenewalReq (renewedFromId)
 * continues the enrollment of the certificate it renewed: it is bound to that enrollment the first time
 * it is used. Null when neither it nor any certificate it renews is bound.
 */
export async function enrollmentForCertificate(db: Db, cert: ContextCertificate): Promise<MdmEnrollment | null> {
  const bound = await enrollmentOfCertificate(db, cert.id)
  if (bound || !cert.renewedFromId) return bound
  let previousId: string | null = cert.renewedFromId
  for (let depth = 0; previousId && depth < MAX_RENEWAL_DEPTH; depth++) {
    const enrollment = await enrollmentOfCertificate(db, previousId)
    // A checked-out enrollment takes no new certificates; the caller refuses the request.
    if (enrollment?.status === 'checked_out') return enrollment
    if (enrollment) {
      try {
        await db.mdmEnrollmentCertificate.create({ data: { deviceCertificateId: cert.id, mdmEnrollmentId: enrollment.id } })
      } catch (err) {
        // A concurrent request bound it first; whatever it bound is the answer.
        if (!isUniqueViolation(err)) throw err
        return enrollmentOfCertificate(db, cert.id)
      }
      return enrollment
    }
    const previous: { renewedFromId: string | null } | null = await db.deviceCertificate.findUnique({ where: { id: previousId }, select: { renewedFromId: true } })
    previousId = previous?.renewedFromId ?? null
  }
  return null
}

export interface NewEnrollment {
  enrollmentId: string
  certificate: ContextCertificate
  currentAccessTokenId: string
  signedInAt: Date
  topic: string
  device: DeviceReport
  enrollmentType: 'user' | 'device'
  now: Date
}

/**
 * Creates the enrollment, binds the certificate and creates the device channel, in one transaction.
 * Null when a unique index refused it: the certificate is already bound (a concurrent Authenticate) or the
 * EnrollmentID has a live enrollment already; the caller reads which.
 */
export async function createEnrollment(db: Client, e: NewEnrollment): Promise<MdmEnrollment | null> {
  try {
    return await db.$transaction(async (tx) => {
      const enrollment = await tx.mdmEnrollment.create({
        data: {
          enrollmentId: e.enrollmentId,
          userId: e.certificate.userId,
          teamId: e.certificate.teamId,
          accessTokenId: e.certificate.accessTokenId,
          enrollmentProfileId: e.certificate.enrollmentProfileId,
          currentAccessTokenId: e.currentAccessTokenId,
          signedInAt: e.signedInAt,
          status: 'authenticated' satisfies EnrollmentStatus,
          topic: e.topic,
          productName: e.device.productName ?? null,
          osVersion: e.device.osVersion ?? null,
          buildVersion: e.device.buildVersion ?? null,
          deviceInfo: e.device.info ?? {},
          enrollmentType: e.enrollmentType,
          udid: e.device.udid ?? null,
          serialNumber: e.device.serialNumber ?? null,
          authenticatedAt: e.now,
          lastSeenAt: e.now,
          createdAt: e.now,
        },
      })
      await tx.mdmEnrollmentCertificate.create({ data: { deviceCertificateId: e.certificate.id, mdmEnrollmentId: enrollment.id, boundAt: e.now } })
      await tx.mdmChannel.create({ data: { mdmEnrollmentId: enrollment.id, channelId: e.enrollmentId, topic: e.topic, lastSeenAt: e.now, createdAt: e.now } })
      return enrollment
    })
  } catch (err) {
    if (isUniqueViolation(err)) return null
    throw err
  }
}

/** The live (not checked out) enrollment with this EnrollmentID, if any. */
export function liveEnrollment(db: Db, enrollmentId: string): Promise<MdmEnrollment | null> {
  return db.mdmEnrollment.findFirst({ where: { enrollmentId, status: { not: 'checked_out' } } })
}

/**
 * Runs `fn` in a transaction holding the enrollment's row lock, with the enrollment as it is now (another
 * request may have changed it since the caller read it).
 */
export async function withEnrollmentLock<T>(db: Client, id: string, fn: (tx: Tx, enrollment: MdmEnrollment) => Promise<T>): Promise<T> {
  return db.$transaction(async (tx) => {
    await tx.$queryRaw`SELECT id FROM mdm_enrollments WHERE id = ${id}::uuid FOR UPDATE`
    const enrollment = await tx.mdmEnrollment.findUniqueOrThrow({ where: { id } })
    return fn(tx, enrollment)
  })
}

/** What a request accepted about the user's token; null fields are left as they are. */
export interface SeenUpdate {
  now: Date
  currentAccessTokenId?: string
  signedInAt?: Date
}

function seen(u: SeenUpdate): Prisma.MdmEnrollmentUpdateInput {
  return {
    lastSeenAt: u.now,
    ...(u.currentAccessTokenId ? { currentAccessTokenId: u.currentAccessTokenId } : {}),
    ...(u.signedInAt ? { signedInAt: u.signedInAt } : {}),
  }
}

/** A repeated Authenticate: refresh what the device reported. */
export function updateAuthenticated(tx: Tx, id: string, device: DeviceReport, u: SeenUpdate) {
  return tx.mdmEnrollment.update({
    where: { id },
    data: {
      ...seen(u),
      ...(device.productName !== undefined ? { productName: device.productName } : {}),
      ...(device.osVersion !== undefined ? { osVersion: device.osVersion } : {}),
      ...(device.buildVersion !== undefined ? { buildVersion: device.buildVersion } : {}),
      ...(device.info && Object.keys(device.info).length ? { deviceInfo: device.info } : {}),
      ...(device.serialNumber !== undefined ? { serialNumber: device.serialNumber } : {}),
    },
  })
}

/**
 * The enrollment and/or a channel was seen: last-seen times and the accepted token (services decide when
 * it is worth a write: mdm-access recordSeen). One round trip for both.
 */
export async function recordSeen(db: Db, target: { enrollmentId?: string; channelId?: string }, u: SeenUpdate): Promise<void> {
  const { enrollmentId, channelId } = target
  if (enrollmentId && channelId) {
    await db.$executeRaw`
      WITH e AS (
        UPDATE mdm_enrollments SET last_seen_at = ${u.now}, updated_at = ${u.now},
          current_access_token_id = COALESCE(${u.currentAccessTokenId ?? null}::uuid, current_access_token_id),
          signed_in_at = COALESCE(${u.signedInAt ?? null}::timestamptz, signed_in_at)
        WHERE id = ${enrollmentId}::uuid RETURNING id
      )
      UPDATE mdm_channels SET last_seen_at = ${u.now}, updated_at = ${u.now} WHERE id = ${channelId}::uuid`
  } else if (enrollmentId) {
    await db.mdmEnrollment.update({ where: { id: enrollmentId }, data: seen(u) })
  } else if (channelId) {
    await db.mdmChannel.update({ where: { id: channelId }, data: { lastSeenAt: u.now } })
  }
}

export interface ChannelToken {
  channelId: string
  enrollmentUserId?: string
  userShortName?: string
  userLongName?: string
  topic: string
  pushToken: string
  pushMagic: string
  awaitingConfiguration: boolean
}

/**
 * Stores a TokenUpdate on its channel (the device channel exists since Authenticate; a user channel is
 * created by its first TokenUpdate). The first device-channel TokenUpdate makes the enrollment active.
 * Call with the enrollment's lock held.
 */
export async function storeTokenUpdate(tx: Tx, enrollment: MdmEnrollment, t: ChannelToken, u: SeenUpdate): Promise<MdmChannel> {
  const data = {
    topic: t.topic,
    pushToken: t.pushToken,
    pushMagic: t.pushMagic,
    awaitingConfiguration: t.awaitingConfiguration,
    tokenUpdatedAt: u.now,
    // A new token is worth pushing to again, whatever APNs said of the last one.
    pushTokenInvalidAt: null,
    lastSeenAt: u.now,
    ...(t.userShortName !== undefined ? { userShortName: t.userShortName } : {}),
    ...(t.userLongName !== undefined ? { userLongName: t.userLongName } : {}),
  }
  const channel = await tx.mdmChannel.upsert({
    where: { mdmEnrollmentId_channelId: { mdmEnrollmentId: enrollment.id, channelId: t.channelId } },
    create: { mdmEnrollmentId: enrollment.id, channelId: t.channelId, enrollmentUserId: t.enrollmentUserId ?? null, createdAt: u.now, ...data },
    update: data,
  })
  const activate = !t.enrollmentUserId && enrollment.status === 'authenticated' ? { status: 'active' satisfies EnrollmentStatus, activatedAt: u.now } : {}
  await tx.mdmEnrollment.update({ where: { id: enrollment.id }, data: { ...seen(u), ...activate } })
  return channel
}

/**
 * CheckOut: the enrollment becomes history and no channel keeps a push token. A removed enrollment stays
 * `removed` (the device leaving is what removal asked for). Call with the lock held.
 */
export async function checkOutEnrollment(tx: Tx, id: string, now: Date, removed = false): Promise<void> {
  if (removed) await tx.mdmEnrollment.update({ where: { id }, data: { lastSeenAt: now } })
  else await tx.mdmEnrollment.update({ where: { id }, data: { status: 'checked_out' satisfies EnrollmentStatus, checkedOutAt: now, lastSeenAt: now } })
  await tx.mdmChannel.updateMany({ where: { mdmEnrollmentId: id }, data: { pushToken: null, pushMagic: null } })
}

/** How many certificates were issued since `since` for RenewalReqs signed by a certificate of this enrollment. */
export async function countRenewalsSince(db: Db, mdmEnrollmentId: string, since: Date): Promise<number> {
  const bound = await db.mdmEnrollmentCertificate.findMany({ where: { mdmEnrollmentId }, select: { deviceCertificateId: true } })
  return db.deviceCertificate.count({ where: { renewedFromId: { in: bound.map((b) => b.deviceCertificateId) }, createdAt: { gt: since } } })
}

/** How many macOS user channels the enrollment has. */
export function countUserChannels(db: Db, mdmEnrollmentId: string): Promise<number> {
  return db.mdmChannel.count({ where: { mdmEnrollmentId, enrollmentUserId: { not: null } } })
}

export function findChannel(db: Db, mdmEnrollmentId: string, channelId: string): Promise<MdmChannel | null> {
  return db.mdmChannel.findUnique({ where: { mdmEnrollmentId_channelId: { mdmEnrollmentId, channelId } } })
}

export interface EnrollmentFilter {
  enrollmentId?: string
  userIds?: string[]
  teamId?: string
  status?: EnrollmentStatus
  /** Only enrollments still in use (authenticated, active) last seen before this. */
  staleBefore?: Date
}

/** Newest first, after `after` (keyset on created_at, id), with their channels. */
export function listEnrollments(db: Db, filter: EnrollmentFilter, limit: number, after?: { createdAt: Date; id: string }) {
  return db.mdmEnrollment.findMany({
    where: {
      ...(filter.enrollmentId ? { enrollmentId: filter.enrollmentId } : {}),
      ...(filter.userIds ? { userId: { in: filter.userIds } } : {}),
      ...(filter.teamId ? { teamId: filter.teamId } : {}),
      ...(filter.status ? { status: filter.status } : {}),
      ...(filter.staleBefore ? { status: { in: ['authenticated', 'active'] }, lastSeenAt: { lt: filter.staleBefore } } : {}),
      ...(after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {}),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: limit,
    include: { channels: { orderBy: { createdAt: 'asc' } } },
  })
}

export function findEnrollment(db: Db, id: string) {
  return db.mdmEnrollment.findUnique({ where: { id }, include: { channels: { orderBy: { createdAt: 'asc' } } } })
}

/**
 * Removes enrollments an administrator gave up on (still authenticated or active): status `removed`, and
 * every command still waiting for them cancelled, in one transaction. The push tokens stay, so a push
 * brings the device back to be told to unenroll. The ids actually removed.
 */
export async function removeEnrollments(db: Client, ids: string[], now: Date): Promise<string[]> {
  if (ids.length === 0) return []
  return db.$transaction(async (tx) => {
    const removed = await tx.mdmEnrollment.updateManyAndReturn({
      where: { id: { in: ids }, status: { in: ['authenticated', 'active'] } },
      data: { status: 'removed' satisfies EnrollmentStatus, removedAt: now },
      select: { id: true },
    })
    const removedIds = removed.map((r) => r.id)
    if (removedIds.length) {
      await tx.mdmCommand.updateMany({ where: { mdmEnrollmentId: { in: removedIds }, status: { in: [...OPEN_STATUSES] } }, data: { status: 'cancelled', cancelledAt: now } })
    }
    return removedIds
  })
}

/** Ids of enrollments still in use last seen before `before`. */
export async function staleEnrollmentIds(db: Db, before: Date): Promise<string[]> {
  const rows = await db.mdmEnrollment.findMany({ where: { status: { in: ['authenticated', 'active'] }, lastSeenAt: { lt: before } }, select: { id: true } })
  return rows.map((r) => r.id)
}

/** The users and teams enrollments name, for showing them (ids not found are left out). */
export async function ownersOf(db: Db, userIds: string[], teamIds: string[]) {
  const [users, teams] = await Promise.all([
    db.user.findMany({ where: { id: { in: [...new Set(userIds)] } }, select: { id: true, email: true, displayName: true } }),
    db.team.findMany({ where: { id: { in: [...new Set(teamIds)] } }, select: { id: true, name: true } }),
  ])
  return { users: new Map(users.map((u) => [u.id, u])), teams: new Map(teams.map((t) => [t.id, t])) }
}

/** Ids of the users with this email (case-insensitive): the admin API's `user` filter. */
export async function userIdsByEmail(db: Db, email: string): Promise<string[]> {
  const rows = await db.user.findMany({ where: { email: { equals: email, mode: 'insensitive' } }, select: { id: true } })
  return rows.map((r) => r.id)
}

/** A team by id or, failing that, by name (the admin API's `team` filter). */
export async function teamIdByIdOrName(db: Db, team: string): Promise<string | undefined> {
  const byId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(team) ? await db.team.findUnique({ where: { id: team }, select: { id: true } }) : null
  if (byId) return byId.id
  return (await db.team.findFirst({ where: { name: team }, orderBy: { createdAt: 'asc' }, select: { id: true } }))?.id
}
