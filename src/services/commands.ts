/**
 * Commands (PROTOCOL.md section 8): an administrator queues a command for an enrollment's channel, the
 * device is pushed, its next report on the command channel gets the command, and the report after that
 * carries the result, which is stored whole. Kept apart from check-in, as nanomdm keeps them.
 *
 * The queue is per channel (the device channel, and each macOS user channel), first in first out. A
 * command stays open until Acknowledged, Error or CommandFormatError; after NotNow it is not sent again in
 * the same session, only after the channel's next Idle (Apple, "Sending MDM Commands to a Device"). A
 * command handed out and not reported on is handed out again on the next request. Only commands Apple's
 * schema allows for the device's platform, channel and user enrollment are queued (command-rules.ts).
 */
import { randomUUID } from 'node:crypto'
import { BadRequestError, ConflictError, NotFoundError } from '../errors.js'
import { channelId, type CommandReport } from '../protocol/checkin.js'
import { checkCommand } from '../protocol/command-rules.js'
import { commandFromJson, commandPlist, commandToJson, reportToJson } from '../protocol/commands.js'
import { platformOf } from '../protocol/platform.js'
import type { PlistDict } from '../protocol/plist.js'
import { cancelCommand, enqueueCommands, findCommand, listCommands, putAside, storeResult, takeNextCommand, type CommandFilter, type FinalStatus, type NewCommand, type ReportOutcome } from '../storage/commands.js'
import { findEnrollment } from '../storage/enrollments.js'
import type { ContextChannel, MdmChannel, MdmCommand, MdmEnrollment } from '../storage/types.js'
import { holdNote, refuse, type MdmAccess, type MdmAnswer, type MdmDeps, type MdmRequest } from './mdm-access.js'

/** Where a new command makes the server push; the push service, or nothing while none is wired. */
export interface Notifier {
  notify(mdmChannelIds: string[]): void
}

export type CommandState = 'pending' | 'sent' | 'acknowledged' | 'error' | 'format_error' | 'not_now' | 'expired' | 'cancelled'

/** A command as the admin API shows it. */
export interface CommandView {
  command_uuid: string
  enrollment_id: string
  channel: string
  request_type: string
  command: unknown
  status: CommandState
  created_at: string
  expires_at: string | null
  sent_at: string | null
  deliveries: number
  not_now_at: string | null
  completed_at: string | null
  cancelled_at: string | null
  result: unknown
}

export interface EnqueueOptions {
  /** `device` (default), `user` (the one user channel), or an EnrollmentUserID. */
  channel?: string
  expiresAt?: Date
  now?: Date
}

export interface CommandService {
  /** A report on the command channel: store the result, answer the next command. */
  report(request: MdmRequest<CommandReport>): Promise<MdmAnswer>
  /** Queues `command` (JSON, see protocol/commands.ts) for each enrollment, all or none, and pushes. */
  enqueue(enrollmentIds: string[], command: unknown, options?: EnqueueOptions): Promise<CommandView[]>
  get(commandUuid: string, now?: Date): Promise<CommandView>
  list(filter: CommandFilter, limit: number, after?: { createdAt: Date; id: string }, now?: Date): Promise<(CommandView & { createdAt: Date; id: string })[]>
  /** Cancels a command not sent yet. */
  cancel(commandUuid: string, now?: Date): Promise<CommandView>
}

const FINAL: Record<string, FinalStatus> = { Acknowledged: 'acknowledged', Error: 'error', CommandFormatError: 'format_error' }

export function createCommandService(deps: MdmDeps, access: MdmAccess, notifier: Notifier): CommandService {
  const { db } = deps

  function view(row: MdmCommand & { channel: { channelId: string } }, now: Date): CommandView {
    const open = row.status === 'pending' || row.status === 'not_now'
    const expired = open && row.expiresAt !== null && row.expiresAt.getTime() <= now.getTime()
    const iso = (d: Date | null) => (d ? d.toISOString() : null)
    return {
      command_uuid: row.commandUuid,
      enrollment_id: row.mdmEnrollmentId,
      channel: row.channel.channelId,
      request_type: row.requestType,
      command: row.command,
      status: expired ? 'expired' : (row.status as CommandState),
      created_at: row.createdAt.toISOString(),
      expires_at: iso(row.expiresAt),
      sent_at: iso(row.sentAt),
      deliveries: row.deliveries,
      not_now_at: iso(row.notNowAt),
      completed_at: iso(row.completedAt),
      cancelled_at: iso(row.cancelledAt),
      result: row.result ?? null,
    }
  }

  /** The channel a command for `enrollment` goes to. */
  function target(enrollment: MdmEnrollment & { channels: MdmChannel[] }, wanted = 'device'): MdmChannel {
    const users = enrollment.channels.filter((c) => c.enrollmentUserId)
    let channel: MdmChannel | undefined
    if (wanted === 'device') channel = enrollment.channels.find((c) => !c.enrollmentUserId)
    else if (wanted === 'user') {
      if (users.length > 1) throw new BadRequestError(`enrollment ${enrollment.id} has ${users.length} user channels: name one by its EnrollmentUserID`, { code: 'ambiguous_channel' })
      channel = users[0]
    } else channel = users.find((c) => c.enrollmentUserId === wanted || c.channelId === wanted)
    if (!channel) throw new BadRequestError(`enrollment ${enrollment.id} has no ${wanted === 'device' || wanted === 'user' ? wanted : `"${wanted}"`} channel`, { code: 'no_such_channel' })
    return channel
  }

  /**
   * Records the report and takes the channel's next command (unless `takeNext` is false): a final result
   * and the next command in one statement, NotNow and Idle as their own steps. An Idle starts a session
   * (every open command is due again); nothing open on the channel when the request was read means no
   * next command to ask for.
   */
  async function recordAndTakeNext(channel: ContextChannel, report: CommandReport, raw: PlistDict, now: Date, takeNext: boolean) {
    let outcome: ReportOutcome | undefined
    if (report.Status !== 'Idle' && report.CommandUUID) {
      if (report.Status !== 'NotNow') {
        // Stored as the device sent it.
        return storeResult(deps.sql, channel.id, report.CommandUUID, FINAL[report.Status]!, reportToJson(raw) as object, now, takeNext)
      }
      outcome = await putAside(db, channel.id, report.CommandUUID, now)
    }
    const next = takeNext && channel.openCommands !== false ? await takeNextCommand(deps.sql, channel.id, now, report.Status === 'Idle') : null
    return { outcome, next }
  }

  return {
    async report(request) {
      const now = request.now ?? new Date()
      const { enrollment, decision, channels } = await access.admit(request, now)
      if (enrollment.status !== 'active') throw refuse(`enrollment ${enrollment.id} has not sent TokenUpdate`, 'not_active')
      const channel = channels.find((c) => c.channelId === channelId(request.message))
      if (!channel?.pushToken) throw refuse(`channel ${channelId(request.message)} has not sent TokenUpdate`, 'not_active')
      if (!decision.ok) return access.reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      await access.recordSeen(enrollment, channel, decision, now)

      // On hold: the result is kept, no command is delivered.
      const held = holdNote(decision)
      const { outcome, next } = await recordAndTakeNext(channel, request.message, request.raw ?? (request.message as unknown as PlistDict), now, !held)
      if (held) return { kind: 'ok', enrollment: enrollment.id, note: held }
      // Devices resend results; a CommandUUID this channel was never sent changes nothing (SECURITY.md rows 11, 12).
      const note = outcome === 'unknown' ? 'result for a command this channel was not sent: ignored' : outcome === 'duplicate' ? 'result already stored: ignored' : undefined
      if (!next) return { kind: 'ok', enrollment: enrollment.id, note }
      return {
        kind: 'ok',
        enrollment: enrollment.id,
        body: { kind: 'plist', value: commandPlist(next.commandUuid, commandFromJson(next.command)) },
        note: `${note ? `${note}; ` : ''}sent command ${next.commandUuid}`,
      }
    },

    async enqueue(enrollmentIds, json, options = {}) {
      const now = options.now ?? new Date()
      if (options.expiresAt && options.expiresAt.getTime() <= now.getTime()) throw new BadRequestError('expires_at is in the past', { code: 'invalid_request' })
      const command = commandFromJson(json)
      const stored = commandToJson(command) as object
      const rows: NewCommand[] = []
      for (const id of new Set(enrollmentIds)) {
        const enrollment = await findEnrollment(db, id)
        if (!enrollment) throw new NotFoundError(`no enrollment ${id}`, { code: 'not_found' })
        if (enrollment.status === 'checked_out' || enrollment.status === 'removed') {
          throw new ConflictError(`enrollment ${id} is ${enrollment.status.replace('_', ' ')}: it takes no commands`, { code: 'enrollment_ended' })
        }
        const channel = target(enrollment, options.channel)
        const rule = checkCommand(command, {
          platform: platformOf(enrollment.productName ?? undefined),
          osVersion: enrollment.osVersion ?? undefined,
          channel: channel.enrollmentUserId ? 'user' : 'device',
          enrollment: enrollment.enrollmentType === 'device' ? 'device' : 'user',
        })
        if (!rule.ok) throw new BadRequestError(enrollmentIds.length > 1 ? `enrollment ${id}: ${rule.rule}` : rule.rule, { code: 'command_not_allowed' })
        rows.push({
          commandUuid: randomUUID().toUpperCase(),
          mdmEnrollmentId: enrollment.id,
          mdmChannelId: channel.id,
          requestType: command.RequestType as string,
          command: stored,
          expiresAt: options.expiresAt ?? null,
          createdAt: now,
        })
      }
      // The views come from the rows the transaction wrote: after the commit the database is not asked
      // again, so a 503 here always means nothing was queued (the administrator may safely retry).
      const created = await enqueueCommands(db, rows)
      notifier.notify(rows.map((r) => r.mdmChannelId))
      return created.map((c) => view(c, now))
    },

    async get(commandUuid, now = new Date()) {
      const row = await findCommand(db, commandUuid)
      if (!row) throw new NotFoundError(`no command ${commandUuid.slice(0, 64)}`, { publicMessage: 'No such command' })
      return view(row, now)
    },

    async list(filter, limit, after, now = new Date()) {
      const rows = await listCommands(db, filter, limit, after)
      return rows.map((r) => ({ ...view(r, now), createdAt: r.createdAt, id: r.id }))
    },

    async cancel(commandUuid, now = new Date()) {
      const row = await findCommand(db, commandUuid)
      if (!row) throw new NotFoundError(`no command ${commandUuid.slice(0, 64)}`, { publicMessage: 'No such command' })
      if (!(await cancelCommand(db, commandUuid, now))) {
        throw new ConflictError(`command ${commandUuid} is ${row.status}: only a command not sent yet can be cancelled`, { code: 'not_cancellable' })
      }
      return view((await findCommand(db, commandUuid))!, now)
    },
  }
}
