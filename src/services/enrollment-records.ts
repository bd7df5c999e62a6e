/**
 * Enrollments as administrators see and end them (the admin API's /enrollments): who and what is
 * enrolled, its channels and their push state, and removal. Removing an enrollment cancels its open
 * commands and pushes the device, whose next request is then told to unenroll (services/mdm-access.ts
 * UnrecognizedDeviceError). CheckOut does not always arrive (PROTOCOL.md section 11), so enrollments
 * not seen for STALE_AFTER are `stale` and can be removed together.
 */
import type { Config } from '../config/index.js'
import { ConflictError, NotFoundError } from '../errors.js'
import type { Client } from '../storage/database.js'
import {
  findEnrollment,
  listEnrollments,
  ownersOf,
  removeEnrollments,
  staleEnrollmentIds,
  teamIdByIdOrName,
  userIdsByEmail,
  type EnrollmentStatus,
} from '../storage/enrollments.js'
import type { MdmChannel, MdmEnrollment } from '../storage/types.js'
import type { Notifier } from './commands.js'

export interface ChannelView {
  channel_id: string
  type: 'device' | 'user'
  enrollment_user_id: string | null
  user_short_name: string | null
  user_long_name: string | null
  last_seen_at: string
  token_updated_at: string | null
  push: { has_token: boolean; status: string | null; status_at: string | null; error: string | null; token_invalid_at: string | null }
  /** The latest declarative-management status report, decoded. */
  ddm_status: unknown
  ddm_status_at: string | null
}

export interface EnrollmentView {
  id: string
  enrollment_id: string
  status: EnrollmentStatus
  stale: boolean
  enrollment_type: 'user' | 'device'
  user: { id: string; email: string | null; display_name: string | null }
  team: { id: string; name: string | null }
  device: Record<string, string | null>
  authenticated_at: string
  activated_at: string | null
  checked_out_at: string | null
  removed_at: string | null
  last_seen_at: string
  channels: ChannelView[]
}

export interface EnrollmentQuery {
  enrollmentId?: string
  user?: string
  team?: string
  status?: EnrollmentStatus | 'stale'
}

export interface EnrollmentRecords {
  list(query: EnrollmentQuery, limit: number, after?: { createdAt: Date; id: string }, now?: Date): Promise<(EnrollmentView & { createdAt: Date })[]>
  get(id: string, now?: Date): Promise<EnrollmentView>
  /** Removes one enrollment; 409 when it already ended. */
  remove(id: string, now?: Date): Promise<EnrollmentView>
  /** Removes every stale enrollment; their ids. */
  removeStale(now?: Date): Promise<string[]>
}

const iso = (d: Date | null) => (d ? d.toISOString() : null)

export function createEnrollmentRecords(deps: { db: Client; config: Config; notifier: Notifier }): EnrollmentRecords {
  const { db, config, notifier } = deps
  const staleBefore = (now: Date) => new Date(now.getTime() - config.staleAfterSeconds * 1000)

  async function views(rows: (MdmEnrollment & { channels: MdmChannel[] })[], now: Date): Promise<EnrollmentView[]> {
    const owners = await ownersOf(db, rows.map((r) => r.userId), rows.map((r) => r.teamId))
    const cutoff = staleBefore(now).getTime()
    return rows.map((r) => {
      const user = owners.users.get(r.userId)
      const inUse = r.status === 'authenticated' || r.status === 'active'
      return {
        id: r.id,
        enrollment_id: r.enrollmentId,
        status: r.status as EnrollmentStatus,
        stale: inUse && r.lastSeenAt.getTime() < cutoff,
        enrollment_type: r.enrollmentType === 'device' ? 'device' : 'user',
        user: { id: r.userId, email: user?.email ?? null, display_name: user?.displayName ?? null },
        team: { id: r.teamId, name: owners.teams.get(r.teamId)?.name ?? null },
        // Device enrollment only: user enrollment never reveals the UDID or serial number.
        device: { product_name: r.productName, os_version: r.osVersion, build_version: r.buildVersion, ...deviceInfo(r.deviceInfo), ...(r.enrollmentType === 'device' ? { udid: r.udid, serial_number: r.serialNumber } : {}) },
        authenticated_at: r.authenticatedAt.toISOString(),
        activated_at: iso(r.activatedAt),
        checked_out_at: iso(r.checkedOutAt),
        removed_at: iso(r.removedAt),
        last_seen_at: r.lastSeenAt.toISOString(),
        channels: r.channels.map((c) => ({
          channel_id: c.channelId,
          type: c.enrollmentUserId ? 'user' : 'device',
          enrollment_user_id: c.enrollmentUserId,
          user_short_name: c.userShortName,
          user_long_name: c.userLongName,
          last_seen_at: c.lastSeenAt.toISOString(),
          token_updated_at: iso(c.tokenUpdatedAt),
          push: { has_token: c.pushToken !== null, status: c.pushStatus, status_at: iso(c.pushStatusAt), error: c.pushError, token_invalid_at: iso(c.pushTokenInvalidAt) },
          ddm_status: c.ddmStatus ?? null,
          ddm_status_at: iso(c.ddmStatusAt),
        })),
      }
    })
  }

  async function one(id: string, now: Date): Promise<EnrollmentView> {
    const row = await findEnrollment(db, id)
    if (!row) throw new NotFoundError(`no enrollment ${id}`, { publicMessage: 'No such enrollment' })
    return (await views([row], now))[0]!
  }

  return {
    async list(query, limit, after, now = new Date()) {
      const userIds = query.user ? await userIdsByEmail(db, query.user) : undefined
      const teamId = query.team ? await teamIdByIdOrName(db, query.team) : undefined
      if ((query.user && userIds!.length === 0) || (query.team && !teamId)) return []
      const rows = await listEnrollments(
        db,
        {
          enrollmentId: query.enrollmentId,
          userIds,
          teamId,
          status: query.status === 'stale' ? undefined : query.status,
          staleBefore: query.status === 'stale' ? staleBefore(now) : undefined,
        },
        limit,
        after,
      )
      const shown = await views(rows, now)
      return shown.map((v, i) => ({ ...v, createdAt: rows[i]!.createdAt }))
    },

    get: (id, now = new Date()) => one(id, now),

    async remove(id, now = new Date()) {
      const before = await one(id, now)
      const removed = await removeEnrollments(db, [id], now)
      if (removed.length === 0) throw new ConflictError(`enrollment ${id} is ${before.status.replace('_', ' ')}`, { code: 'enrollment_ended', publicMessage: `The enrollment is ${before.status.replace('_', ' ')} already` })
      const row = await findEnrollment(db, id)
      // The device learns it is removed on its next request: ask it to make one now.
      notifier.notify(row!.channels.map((c) => c.id))
      return one(id, now)
    },

    async removeStale(now = new Date()) {
      const removed = await removeEnrollments(db, await staleEnrollmentIds(db, staleBefore(now)), now)
      for (const id of removed) {
        const row = await findEnrollment(db, id)
        if (row) notifier.notify(row.channels.map((c) => c.id))
      }
      return removed
    },
  }
}

/** Authenticate's extra fields, snake_case: device_name, model, model_name. */
function deviceInfo(info: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (info && typeof info === 'object') {
    for (const [k, v] of Object.entries(info)) if (typeof v === 'string') out[k.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase()] = v
  }
  return out
}
