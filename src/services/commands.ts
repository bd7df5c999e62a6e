/**
 * The command channel (PROTOCOL.md section 8): the device PUTs the result of the last command, or Idle,
 * and the answer is the next command or an empty 200. Kept apart from check-in, as nanomdm keeps them.
 */
import type { CommandReport } from '../protocol/checkin.js'
import { channelId } from '../protocol/checkin.js'
import { findChannel, touchChannel, touchEnrollment } from '../storage/enrollments.js'
import { holdNote, refuse, type MdmAccess, type MdmAnswer, type MdmDeps, type MdmRequest } from './mdm-access.js'

export interface CommandService {
  /** A report on the command channel: store the result, answer the next command. */
  report(request: MdmRequest<CommandReport>): Promise<MdmAnswer>
}

export function createCommandService(deps: MdmDeps, access: MdmAccess): CommandService {
  const { db } = deps
  return {
    /**
     * Until a command queue exists there is never a next command: every report is answered with an empty
     * 200; a result for a command (none was sent) is ignored and logged.
     */
    async report(request) {
      const now = request.now ?? new Date()
      const { enrollment, decision } = await access.admit(request, now)
      if (enrollment.status !== 'active') throw refuse(`enrollment ${enrollment.id} has not sent TokenUpdate`, 'not_active')
      const channel = await findChannel(db, enrollment.id, channelId(request.message))
      if (!channel?.pushToken) throw refuse(`channel ${channelId(request.message)} has not sent TokenUpdate`, 'not_active')
      if (!decision.ok) return access.reauthenticate(enrollment.teamId, decision.reason, enrollment.id)
      await touchEnrollment(db, enrollment.id, access.seenUpdate(enrollment, decision, now))
      await touchChannel(db, channel.id, now)
      const { Status: status } = request.message
      return { kind: 'ok', enrollment: enrollment.id, note: holdNote(decision) ?? (status === 'Idle' ? undefined : 'result for a command this server did not send: ignored') }
    },
  }
}
