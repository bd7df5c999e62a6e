/**
 * Check-in protocol messages (PUT with `Content-Type: application/x-apple-aspen-mdm-checkin`) and the
 * command channel's reports (`application/x-apple-aspen-mdm`), as a user-enrolled device sends them.
 * https://developer.apple.com/documentation/devicemanagement/check-in and Apple's schema in
 * github.com/apple/device-management (mdm/checkin/*.yaml). PROTOCOL.md section 8.
 *
 * Account-driven enrollment comes in two forms. A user-enrolled device names itself by EnrollmentID
 * (never a UDID or serial number) and macOS adds EnrollmentUserID on the user channel; a device-enrolled
 * one (ADDE) by its UDID, and macOS adds UserID on the user channel. Parsed messages carry the identifier
 * as `EnrollmentID` (and the user's as `EnrollmentUserID`) either way, so the rest of the server has one
 * name for "the device" and "the user channel"; `isDeviceEnrollment` says which form the device used.
 */
import { z } from 'zod'
import { BadRequestError } from '../errors.js'
import { buildPlist, parsePlistDict, type PlistDict, type PlistLimits } from './plist.js'

const data = z.instanceof(Uint8Array)
/** Identifiers are UUID-like strings in practice; bound them so they are safe to store and log. */
const identifier = z.string().min(1).max(256)

const channel = {
  EnrollmentID: identifier,
  EnrollmentUserID: identifier.optional(),
  UDID: identifier.optional(),
}

/** https://developer.apple.com/documentation/devicemanagement/authenticate */
export const Authenticate = z.looseObject({
  MessageType: z.literal('Authenticate'),
  Topic: z.string().min(1).max(512),
  ...channel,
  OSVersion: z.string().max(64).optional(),
  BuildVersion: z.string().max(64).optional(),
  ProductName: z.string().max(128).optional(),
  Model: z.string().max(128).optional(),
  ModelName: z.string().max(128).optional(),
  DeviceName: z.string().max(256).optional(),
  /** Device enrollment only (ADDE): with UDID, which names the device in place of EnrollmentID. */
  SerialNumber: z.string().max(64).optional(),
})

/** https://developer.apple.com/documentation/devicemanagement/token-update */
export const TokenUpdate = z.looseObject({
  MessageType: z.literal('TokenUpdate'),
  Topic: z.string().min(1).max(512),
  ...channel,
  Token: data.refine((t) => t.length > 0 && t.length <= 256, 'Token must be 1 to 256 bytes'),
  PushMagic: z.string().min(1).max(256),
  AwaitingConfiguration: z.boolean().optional(),
  UserShortName: z.string().max(256).optional(),
  UserLongName: z.string().max(512).optional(),
  UserID: z.string().max(256).optional(),
  NotOnConsole: z.boolean().optional(),
})

/** https://developer.apple.com/documentation/devicemanagement/check-out */
export const CheckOut = z.looseObject({
  MessageType: z.literal('CheckOut'),
  Topic: z.string().min(1).max(512),
  ...channel,
})

/** https://developer.apple.com/documentation/devicemanagement/declarative-management */
export const DeclarativeManagement = z.looseObject({
  MessageType: z.literal('DeclarativeManagement'),
  ...channel,
  Endpoint: z.string().min(1).max(1024),
  Data: data.optional(),
})

/** https://developer.apple.com/documentation/devicemanagement/get-token */
export const GetToken = z.looseObject({
  MessageType: z.literal('GetToken'),
  ...channel,
  TokenServiceType: z.string().min(1).max(256),
  TokenParameters: z.record(z.string(), z.unknown()).optional(),
})

/** Messages a user-enrolled device may send that this server recognises but does not serve. */
export const OtherCheckin = z.looseObject({
  MessageType: z.enum(['UserAuthenticate', 'SetBootstrapToken', 'GetBootstrapToken', 'ReturnToService']),
  ...channel,
})

export const CheckinMessage = z.discriminatedUnion('MessageType', [Authenticate, TokenUpdate, CheckOut, DeclarativeManagement, GetToken, OtherCheckin])

export type Authenticate = z.infer<typeof Authenticate>
export type TokenUpdate = z.infer<typeof TokenUpdate>
export type CheckOut = z.infer<typeof CheckOut>
export type DeclarativeManagement = z.infer<typeof DeclarativeManagement>
export type GetToken = z.infer<typeof GetToken>
export type CheckinMessage = z.infer<typeof CheckinMessage>

const KNOWN_MESSAGE_TYPES = new Set(['Authenticate', 'TokenUpdate', 'CheckOut', 'DeclarativeManagement', 'GetToken', ...OtherCheckin.shape.MessageType.options])

export const CHECKIN_CONTENT_TYPE = 'application/x-apple-aspen-mdm-checkin'
export const COMMAND_CONTENT_TYPE = 'application/x-apple-aspen-mdm'

export class CheckinFormatError extends BadRequestError {
  constructor(message: string, publicMessage?: string) {
    super(message, { code: 'invalid_checkin', publicMessage })
  }
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0]!
  const where = issue.path.length ? issue.path.join('.') : 'message'
  return `${where}: ${issue.message}`
}

/** Messages of device-enrolled devices (UDID, no EnrollmentID), as parsed. */
const deviceEnrolled = new WeakSet<object>()

/** True when the device named itself by UDID (account-driven device enrollment), not EnrollmentID. */
export function isDeviceEnrollment(message: object): boolean {
  return deviceEnrolled.has(message)
}

/**
 * A device-enrolled device's UDID becomes the message's EnrollmentID, and its macOS UserID the
 * EnrollmentUserID, before validation. A message with neither EnrollmentID nor UDID is refused by it.
 */
function identify(dict: PlistDict): { dict: PlistDict; device: boolean } {
  if (typeof dict.EnrollmentID === 'string' || typeof dict.UDID !== 'string') return { dict, device: false }
  const out: PlistDict = { ...dict, EnrollmentID: dict.UDID }
  if (typeof dict.UserID === 'string' && dict.EnrollmentUserID === undefined) out.EnrollmentUserID = dict.UserID
  return { dict: out, device: true }
}

function remember<T extends object>(value: T, device: boolean): T {
  if (device) deviceEnrolled.add(value)
  return value
}

/** Parses and validates a check-in body. Throws a 400 error with a clear message when it is not valid. */
export function parseCheckin(body: Uint8Array, limits?: PlistLimits): CheckinMessage {
  const dict = parsePlistDict(body, limits)
  if (typeof dict.MessageType !== 'string') throw new CheckinFormatError('MessageType is missing')
  const { dict: named, device } = identify(dict)
  const parsed = CheckinMessage.safeParse(named)
  if (!parsed.success) {
    if (!KNOWN_MESSAGE_TYPES.has(dict.MessageType)) throw new CheckinFormatError(`unknown MessageType ${JSON.stringify(dict.MessageType.slice(0, 64))}`, 'unknown MessageType')
    throw new CheckinFormatError(`${dict.MessageType}: ${describe(parsed.error)}`)
  }
  return remember(parsed.data, device)
}

/** https://developer.apple.com/documentation/devicemanagement/errorchainitem */
const ErrorChainItem = z.looseObject({
  ErrorCode: z.number().int(),
  ErrorDomain: z.string().max(1024),
  LocalizedDescription: z.string().max(4096).optional(),
  USEnglishDescription: z.string().max(4096).optional(),
})

/**
 * What the device PUTs to ServerURL: the result of the last command (or Idle), which asks for the next.
 * https://developer.apple.com/documentation/devicemanagement/implementing-device-management/sending-mdm-commands-to-a-device
 */
export const CommandReport = z
  .looseObject({
    ...channel,
    Status: z.enum(['Idle', 'Acknowledged', 'Error', 'CommandFormatError', 'NotNow']),
    CommandUUID: z.string().min(1).max(256).optional(),
    ErrorChain: z.array(ErrorChainItem).max(64).optional(),
  })
  .refine((r) => r.Status === 'Idle' || r.CommandUUID !== undefined, { message: 'CommandUUID is required unless Status is Idle', path: ['CommandUUID'] })

export type CommandReport = z.infer<typeof CommandReport>

export function parseCommandReport(body: Uint8Array, limits?: PlistLimits): { report: CommandReport; raw: PlistDict } {
  const dict = parsePlistDict(body, limits)
  const { dict: named, device } = identify(dict)
  const parsed = CommandReport.safeParse(named)
  if (!parsed.success) throw new CheckinFormatError(`command report: ${describe(parsed.error)}`)
  return { report: remember(parsed.data, device), raw: dict }
}

/** The channel a message belongs to: the device, or (macOS) a user on it. */
export function channelId(message: { EnrollmentID: string; EnrollmentUserID?: string }): string {
  return message.EnrollmentUserID ? `${message.EnrollmentID}:${message.EnrollmentUserID}` : message.EnrollmentID
}

// ---------------------------------------------------------------------------------------------------
// Building: what a device sends (the device simulator, src/device). The same schemas check the message
// before it goes out, so the simulator never sends what this server's own parser would refuse.

/** Keys whose value is undefined are left out (a plist has no undefined). */
function definedKeys(fields: Record<string, unknown>): PlistDict {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as PlistDict
}

/**
 * A device-enrolled device's message as it sends it: `UDID` (and a Mac's `UserID`) where a user-enrolled
 * one has `EnrollmentID` (`EnrollmentUserID`). Checked as parsed: under the name the server reads it by.
 */
export type DeviceEnrolledInput<T> = T extends unknown ? Omit<T, 'EnrollmentID' | 'EnrollmentUserID'> & { UDID: string; UserID?: string } : never

/** A check-in message body as a device PUTs it (`application/x-apple-aspen-mdm-checkin`), either enrollment's. */
export function buildCheckin(message: z.input<typeof CheckinMessage> | DeviceEnrolledInput<z.input<typeof CheckinMessage>>): Buffer {
  const dict = definedKeys(message)
  const parsed = CheckinMessage.safeParse(identify(dict).dict)
  if (!parsed.success) throw new CheckinFormatError(`${String(dict.MessageType)}: ${describe(parsed.error)}`)
  return Buffer.from(buildPlist(dict), 'utf8')
}

/** A command-channel report (`application/x-apple-aspen-mdm`): Idle, or the result of a command with its own keys. */
export function buildCommandReport(report: (z.input<typeof CommandReport> | DeviceEnrolledInput<z.input<typeof CommandReport>>) & Record<string, unknown>): Buffer {
  const dict = definedKeys(report)
  const parsed = CommandReport.safeParse(identify(dict).dict)
  if (!parsed.success) throw new CheckinFormatError(`command report: ${describe(parsed.error)}`)
  return Buffer.from(buildPlist(dict), 'utf8')
}
