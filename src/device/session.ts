/**
 * One command-channel session as a device runs it (PROTOCOL.md section 8): Idle, then the answer to each
 * command the server hands out (answers.ts), until the server answers with an empty body. A command
 * handed out again after the device answered it means the server does not record results: the device
 * would loop, so the session fails and says so (unless the device answers NotNow, when the server is
 * right to hand it out again in a later session).
 */
import { readCommand } from '../protocol/commands.js'
import { parsePlistDict, type PlistDict } from '../protocol/plist.js'
import { answerCommand, type CommandAnswer, type DeviceState } from './answers.js'
import { checkinFix, responseFacts, StepFailure } from './steps.js'
import type { TransportResponse } from './transport.js'

export interface AnsweredCommand {
  commandUuid: string
  requestType: string
  status: CommandAnswer['status']
  note: string
}

export interface IdleResult {
  answered: AnsweredCommand[]
  /** A DeclarativeManagement command asked for a sync. */
  syncRequested: boolean
}

/** Sends one report (the channel's keys are added by the device) and returns the server's answer. */
export type ReportSender = (fields: Record<string, unknown>) => Promise<{ res: TransportResponse; url: string }>

const MAX_COMMANDS_PER_SESSION = 100

/** `notNow` answers every command NotNow. */
export async function commandSession(send: ReportSender, state: DeviceState, options: { notNow?: boolean } = {}): Promise<IdleResult> {
  const answered: AnsweredCommand[] = []
  const seen = new Set<string>()
  let syncRequested = false
  let report: Record<string, unknown> = { Status: 'Idle' }
  for (;;) {
    const { res, url } = await send(report)
    if (res.status !== 200) throw new StepFailure('commands', responseFacts(res, `200 to the ${String(report.Status)} report`, url, checkinFix(res)))
    if (res.body.length === 0) return { answered, syncRequested }
    let dict: PlistDict
    try {
      dict = parsePlistDict(res.body)
    } catch (err) {
      throw new StepFailure('commands', { expected: 'an empty body or a command plist', got: `unreadable: ${(err as Error).message}`, status: 200, url })
    }
    const read = readCommand(dict)
    if ('problem' in read) {
      if (!read.commandUuid) throw new StepFailure('commands', { expected: 'a command plist {CommandUUID, Command: {RequestType}}', got: read.problem, status: 200, url })
      answered.push({ commandUuid: read.commandUuid, requestType: '?', status: 'CommandFormatError', note: `CommandFormatError (${read.problem})` })
      report = { Status: 'CommandFormatError', CommandUUID: read.commandUuid }
      continue
    }
    if (seen.has(read.commandUuid) && !options.notNow) {
      throw new StepFailure('commands', { expected: 'the next command or an empty body', got: `${read.command.RequestType} ${read.commandUuid} again, after the device answered it`, status: 200, url, fix: 'the server does not record command results: the device would loop' })
    }
    if (seen.has(read.commandUuid)) return { answered, syncRequested }
    seen.add(read.commandUuid)
    if (answered.length >= MAX_COMMANDS_PER_SESSION) throw new StepFailure('commands', { expected: `at most ${MAX_COMMANDS_PER_SESSION} commands in one session`, got: 'more', status: 200, url })
    const answer = answerCommand(read.command, state, options)
    if (answer.sync) syncRequested = true
    answered.push({ commandUuid: read.commandUuid, requestType: read.command.RequestType, status: answer.status, note: answer.note })
    report = { Status: answer.status, CommandUUID: read.commandUuid, ...answer.fields }
  }
}
