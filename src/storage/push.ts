/**
 * Storage of push state (columns push_status, push_status_at, push_error and push_token_invalid_at of
 * mdm_channels): what the push service reads to decide whether and where to push, and what it records
 * after APNs answered. TokenUpdate (enrollments.ts storeTokenUpdate) writes the token and clears
 * push_token_invalid_at; this module never changes the token itself.
 */
import type { Db } from './database.js'

/** What a push needs to know of one channel. */
export interface PushTarget {
  /** mdm_channels.id */
  id: string
  /** The device's channel id (EnrollmentID, or EnrollmentID:EnrollmentUserID). */
  channelId: string
  mdmEnrollmentId: string
  enrollmentStatus: string
  topic: string
  pushToken: string | null
  pushMagic: string | null
  pushTokenInvalidAt: Date | null
  /** The reason APNs gave last time (for a token already known to be invalid). */
  pushError: string | null
}

const targetSelect = {
  id: true,
  channelId: true,
  mdmEnrollmentId: true,
  topic: true,
  pushToken: true,
  pushMagic: true,
  pushTokenInvalidAt: true,
  pushError: true,
} as const

export async function findPushTarget(db: Db, id: string): Promise<PushTarget | null> {
  const row = await db.mdmChannel.findUnique({ where: { id }, select: { ...targetSelect, enrollment: { select: { status: true } } } })
  if (!row) return null
  const { enrollment, ...channel } = row
  return { ...channel, enrollmentStatus: enrollment.status }
}

/** An enrollment's status and every channel it has (device channel first), or null when there is no such enrollment. */
export async function findEnrollmentPushTargets(db: Db, mdmEnrollmentId: string): Promise<{ status: string; channels: PushTarget[] } | null> {
  const row = await db.mdmEnrollment.findUnique({
    where: { id: mdmEnrollmentId },
    select: { status: true, channels: { select: targetSelect, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] } },
  })
  if (!row) return null
  return { status: row.status, channels: row.channels.map((c) => ({ ...c, enrollmentStatus: row.status })) }
}

export interface PushRecord {
  status: string
  /** APNs' reason, or a local one; null when delivered. */
  error: string | null
  at: Date
  /**
   * APNs called this token invalid: set push_token_invalid_at, but only while the channel still has this
   * token; a TokenUpdate that arrived during the push brought a new one, which is worth pushing to.
   */
  invalidToken?: string
}

/**
 * Records the outcome of a push. updateMany, not update: a channel deleted meanwhile (its enrollment
 * removed from the database) is not an error.
 */
export async function recordPushOutcome(db: Db, id: string, r: PushRecord): Promise<void> {
  const data = { pushStatus: r.status, pushStatusAt: r.at, pushError: r.error }
  if (r.invalidToken !== undefined) {
    const marked = await db.mdmChannel.updateMany({ where: { id, pushToken: r.invalidToken }, data: { ...data, pushTokenInvalidAt: r.at } })
    if (marked.count > 0) return
  }
  await db.mdmChannel.updateMany({ where: { id }, data })
}
