/**
 * MDM commands as they travel (PROTOCOL.md section 8): the plist the server answers a report with,
 * `{CommandUUID, Command: {RequestType, ...}}`, and the JSON administrators write and read.
 * https://developer.apple.com/documentation/devicemanagement/commands-and-queries
 *
 * JSON has no bytes and no dates, plists have both: a command's `data` value is written in JSON as
 * `{"$data": "<Base64>"}` (an InstallProfile `Payload`, say) and a `date` as `{"$date": "<ISO 8601>"}`.
 * Results go the other way for reading only: data becomes its Base64 text, a date its ISO text.
 */
import { BadRequestError } from '../errors.js'
import { isDict, type PlistDict, type PlistValue } from './plist.js'

/** Nesting deeper than any command Apple defines (settings lists of dictionaries of arrays). */
const MAX_DEPTH = 16
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

export class CommandJsonError extends BadRequestError {
  constructor(message: string) {
    super(message, { code: 'invalid_command' })
  }
}

/** Any plist value written as tagged JSON ({"$data"}, {"$date"}): commands, and ESSO payloads in the admin API. */
export function plistFromJson(json: unknown, what = 'value'): PlistValue {
  return fromJson(json, what, 0)
}

/** The Command dictionary an administrator wrote, as the plist value the device gets. */
export function commandFromJson(json: unknown): PlistDict {
  const value = fromJson(json, 'command', 0)
  if (!isDict(value)) throw new CommandJsonError('the command must be an object')
  if (typeof value.RequestType !== 'string' || value.RequestType === '') throw new CommandJsonError('the command needs a RequestType string')
  return value
}

function fromJson(json: unknown, path: string, depth: number): PlistValue {
  if (depth > MAX_DEPTH) throw new CommandJsonError(`${path} is nested deeper than ${MAX_DEPTH}`)
  if (typeof json === 'string' || typeof json === 'boolean') return json
  if (typeof json === 'number') {
    if (!Number.isFinite(json)) throw new CommandJsonError(`${path} is not a finite number`)
    return json
  }
  if (Array.isArray(json)) return json.map((v, i) => fromJson(v, `${path}[${i}]`, depth + 1))
  if (json && typeof json === 'object') {
    const keys = Object.keys(json)
    if (keys.length === 1 && keys[0] === '$data') {
      const text = (json as { $data: unknown }).$data
      if (typeof text !== 'string' || !BASE64.test(text.replace(/\s+/g, '')) || text.replace(/\s+/g, '').length % 4 === 1) {
        throw new CommandJsonError(`${path}.$data is not Base64`)
      }
      return new Uint8Array(Buffer.from(text, 'base64'))
    }
    if (keys.length === 1 && keys[0] === '$date') {
      const text = (json as { $date: unknown }).$date
      const date = typeof text === 'string' ? new Date(text) : undefined
      if (!date || Number.isNaN(date.getTime())) throw new CommandJsonError(`${path}.$date is not an ISO 8601 date`)
      return date
    }
    const out: PlistDict = {}
    for (const key of keys) {
      if (FORBIDDEN_KEYS.has(key)) throw new CommandJsonError(`${path} has the key ${key}`)
      out[key] = fromJson((json as Record<string, unknown>)[key], `${path}.${key}`, depth + 1)
    }
    return out
  }
  throw new CommandJsonError(`${path} has a value JSON cannot carry into a plist (null?)`)
}

/** A plist value as tagged JSON again (data as `{"$data"}`, dates as `{"$date"}`): how commands are stored. */
export function commandToJson(value: PlistValue): unknown {
  if (value instanceof Uint8Array) return { $data: Buffer.from(value).toString('base64') }
  if (value instanceof Date) return { $date: value.toISOString() }
  if (Array.isArray(value)) return value.map(commandToJson)
  if (isDict(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, commandToJson(v)]))
  return value
}

/** A device's report for reading: data as Base64 text, dates as ISO text. */
export function reportToJson(value: PlistValue): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64')
  if (value instanceof Date) return value.toISOString()
  if (Array.isArray(value)) return value.map(reportToJson)
  if (isDict(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reportToJson(v)]))
  return value
}

/** What the server answers a report with when a command is due. */
export function commandPlist(commandUuid: string, command: PlistDict): PlistDict {
  return { CommandUUID: commandUuid, Command: command }
}

/**
 * The device's side of `commandPlist`: the command in the server's answer to a report, or why it is
 * not one (a device answers that with CommandFormatError when it can read a CommandUUID).
 */
export function readCommand(dict: PlistDict): { commandUuid: string; command: PlistDict & { RequestType: string } } | { problem: string; commandUuid?: string } {
  const commandUuid = typeof dict.CommandUUID === 'string' && dict.CommandUUID !== '' ? dict.CommandUUID : undefined
  if (!commandUuid) return { problem: 'the answer has no CommandUUID' }
  const command = dict.Command
  if (!isDict(command)) return { problem: 'the answer has no Command dictionary', commandUuid }
  if (typeof command.RequestType !== 'string' || command.RequestType === '') return { problem: 'the Command has no RequestType', commandUuid }
  return { commandUuid, command: command as PlistDict & { RequestType: string } }
}
