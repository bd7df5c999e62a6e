/**
 * What the simulated device answers each command with: plausible results per RequestType, shaped as
 * Apple documents them and limited as its enrollment limits them: user enrollment gives no UDID, serial
 * number or unmanaged apps; device enrollment gives the UDID and serial number and takes the commands
 * only it allows (EraseDevice, DeviceLock, ...), which the simulator acknowledges and notes without
 * doing anything destructive to its state. The device keeps a little state so answers agree with each other: a profile
 * InstallProfile put there shows in ProfileList until RemoveProfile, an app InstallApplication
 * installed shows in InstalledApplicationList.
 *
 * A command Apple's schema does not allow on this platform under the device's enrollment is answered `Error`
 * with an ErrorChain, as a device refuses it; an unknown RequestType `Error` too; a command without the
 * keys it needs `CommandFormatError`. With `notNow` every command is answered `NotNow` (the device is
 * locked, say), and the server must send it again after the next Idle.
 * https://developer.apple.com/documentation/devicemanagement/commands-and-queries
 */
import type { X509Certificate } from 'node:crypto'
import { parseSignedData } from '../pki/cms.js'
import { checkCommand, commandRules } from '../protocol/command-rules.js'
import { isDict, parsePlistDict, type PlistDict, type PlistValue } from '../protocol/plist.js'
import type { DeviceModel } from './models.js'

export type ReportStatus = 'Acknowledged' | 'Error' | 'CommandFormatError' | 'NotNow'

export interface CommandAnswer {
  status: ReportStatus
  /** The result's own keys (QueryResponses, ProfileList, ErrorChain, ...). */
  fields: PlistDict
  /** For the report: what was answered, in a few words. */
  note: string
  /** A DeclarativeManagement command: the device syncs right after acknowledging it. */
  sync?: boolean
}

export interface InstalledProfile {
  PayloadIdentifier: string
  PayloadUUID: string
  PayloadDisplayName?: string
  PayloadOrganization?: string
  PayloadVersion: number
  PayloadContent: PlistDict[]
}

export interface ManagedApp {
  Identifier: string
  Name: string
  Version: string
  ShortVersion: string
}

/** What a device has that commands ask about. */
export interface DeviceState {
  model: DeviceModel
  enrollmentId: string
  /** User enrollment unless said. */
  enrollment?: 'user' | 'device'
  /** Device enrollment: what DeviceInformation answers for UDID and SerialNumber. */
  udid?: string
  serialNumber?: string
  channel: 'device' | 'user'
  /** By PayloadIdentifier; the enrollment profile included. */
  profiles: Map<string, InstalledProfile>
  /** Managed apps by bundle identifier. */
  apps: Map<string, ManagedApp>
  identity?: X509Certificate
  /** Destructive commands acknowledged and not carried out (`EraseDevice`, `DeviceLock`), in order. */
  noted?: string[]
}

const MDM_ERROR_DOMAIN = 'MCMDMErrorDomain'

function errorChain(code: number, domain: string, description: string): PlistDict {
  return { ErrorChain: [{ ErrorCode: code, ErrorDomain: domain, LocalizedDescription: description, USEnglishDescription: description }] }
}

function formatError(note: string): CommandAnswer {
  return { status: 'CommandFormatError', fields: {}, note }
}

function error(code: number, domain: string, description: string, note: string): CommandAnswer {
  return { status: 'Error', fields: errorChain(code, domain, description), note }
}

export function answerCommand(command: PlistDict & { RequestType: string }, state: DeviceState, options: { notNow?: boolean } = {}): CommandAnswer {
  const type = command.RequestType
  if (options.notNow) return { status: 'NotNow', fields: {}, note: `${type}: NotNow (--not-now)` }
  if (!commandRules(type)) return error(12021, MDM_ERROR_DOMAIN, `The MDM command “${type}” is not supported.`, `${type}: Error (unknown RequestType)`)
  // The command itself, not its keys: a device leaves out what user enrollment withholds (UDID in Queries, ...).
  const enrollment = state.enrollment ?? 'user'
  const allowed = checkCommand({ RequestType: type }, { platform: state.model.platform, osVersion: state.model.osVersion, channel: state.channel, enrollment })
  if (!allowed.ok) return error(12021, MDM_ERROR_DOMAIN, `The MDM command “${type}” is not supported on this device: ${allowed.rule}.`, `${type}: Error (${allowed.rule})`)
  const answer = ANSWERS[type]
  return answer ? answer(command, state) : { status: 'Acknowledged', fields: {}, note: `${type}: Acknowledged` }
}

type Answerer = (command: PlistDict, state: DeviceState) => CommandAnswer

const ANSWERS: Record<string, Answerer> = {
  DeviceInformation(command, state) {
    const queries = Array.isArray(command.Queries) ? command.Queries.filter((q): q is string => typeof q === 'string') : []
    if (!Array.isArray(command.Queries)) return formatError('DeviceInformation: CommandFormatError (no Queries)')
    const known = deviceInformation(state)
    // Keys the enrollment withholds (user enrollment: UDID, SerialNumber, IMEI, ...) and unknown ones are left out, as a device does.
    const responses = Object.fromEntries(queries.filter((q) => q in known).map((q) => [q, known[q]!]))
    return { status: 'Acknowledged', fields: { QueryResponses: responses }, note: `DeviceInformation: ${Object.keys(responses).length} of ${queries.length} queries answered` }
  },

  ProfileList(_command, state) {
    const list = [...state.profiles.values()].map((p) => ({ ...p, IsManaged: true, IsEncrypted: false, HasRemovalPasscode: false }))
    return { status: 'Acknowledged', fields: { ProfileList: list }, note: `ProfileList: ${list.length} profile(s)` }
  },

  InstallProfile(command, state) {
    if (!(command.Payload instanceof Uint8Array)) return formatError('InstallProfile: CommandFormatError (Payload is not data)')
    const profile = readProfile(command.Payload)
    if (!profile) return error(1000, 'MCProfileErrorDomain', 'The profile is not a valid configuration profile.', 'InstallProfile: Error (unreadable profile)')
    state.profiles.set(profile.PayloadIdentifier, profile)
    return { status: 'Acknowledged', fields: {}, note: `InstallProfile: Acknowledged (${profile.PayloadIdentifier})` }
  },

  RemoveProfile(command, state) {
    if (typeof command.Identifier !== 'string') return formatError('RemoveProfile: CommandFormatError (no Identifier)')
    if (!state.profiles.has(command.Identifier)) return error(1004, 'MCProfileErrorDomain', `The profile “${command.Identifier}” is not installed.`, `RemoveProfile: Error (${command.Identifier} not installed)`)
    state.profiles.delete(command.Identifier)
    return { status: 'Acknowledged', fields: {}, note: `RemoveProfile: Acknowledged (${command.Identifier})` }
  },

  InstalledApplicationList(command, state) {
    // Under user enrollment a device lists managed apps only, whatever ManagedAppsOnly says.
    const wanted = Array.isArray(command.Identifiers) ? new Set(command.Identifiers) : undefined
    const list = [...state.apps.values()].filter((a) => !wanted || wanted.has(a.Identifier)).map((a) => ({ ...a, BundleSize: 48_000_000, IsValidated: true }))
    return { status: 'Acknowledged', fields: { InstalledApplicationList: list }, note: `InstalledApplicationList: ${list.length} managed app(s)${command.ManagedAppsOnly === true ? ' (ManagedAppsOnly)' : ''}` }
  },

  ManagedApplicationList(command, state) {
    const wanted = Array.isArray(command.Identifiers) ? new Set(command.Identifiers) : undefined
    const list = Object.fromEntries([...state.apps.values()].filter((a) => !wanted || wanted.has(a.Identifier)).map((a) => [a.Identifier, { Status: 'Managed', ManagementFlags: 0 }]))
    return { status: 'Acknowledged', fields: { ManagedApplicationList: list }, note: `ManagedApplicationList: ${Object.keys(list).length} app(s)` }
  },

  InstallApplication(command, state) {
    const id = typeof command.Identifier === 'string' ? command.Identifier : typeof command.iTunesStoreID === 'number' ? `com.example.store.${command.iTunesStoreID}` : undefined
    if (!id) return formatError('InstallApplication: CommandFormatError (no Identifier or iTunesStoreID)')
    state.apps.set(id, { Identifier: id, Name: id.split('.').pop() ?? id, Version: '1', ShortVersion: '1.0' })
    return { status: 'Acknowledged', fields: { Identifier: id, State: 'Installing' }, note: `InstallApplication: Acknowledged (${id})` }
  },

  RemoveApplication(command, state) {
    if (typeof command.Identifier !== 'string') return formatError('RemoveApplication: CommandFormatError (no Identifier)')
    if (!state.apps.delete(command.Identifier)) return error(12024, MDM_ERROR_DOMAIN, `The app “${command.Identifier}” is not managed.`, `RemoveApplication: Error (${command.Identifier} not managed)`)
    return { status: 'Acknowledged', fields: {}, note: `RemoveApplication: Acknowledged (${command.Identifier})` }
  },

  SecurityInfo(_command, state) {
    const info: PlistDict = { PasscodePresent: true, PasscodeCompliant: true, PasscodeCompliantWithProfiles: true }
    if (state.model.platform === 'macOS') Object.assign(info, { SystemIntegrityProtectionEnabled: true })
    return { status: 'Acknowledged', fields: { SecurityInfo: info }, note: 'SecurityInfo: Acknowledged' }
  },

  CertificateList(_command, state) {
    const list = state.identity ? [{ CommonName: commonNameOf(state.identity), Data: new Uint8Array(state.identity.raw), IsIdentity: true }] : []
    return { status: 'Acknowledged', fields: { CertificateList: list }, note: `CertificateList: ${list.length} certificate(s)` }
  },

  ProvisioningProfileList() {
    return { status: 'Acknowledged', fields: { ProvisioningProfileList: [] }, note: 'ProvisioningProfileList: none' }
  },

  Settings(command) {
    const items = Array.isArray(command.Settings) ? command.Settings.filter(isDict) : []
    return { status: 'Acknowledged', fields: { Settings: items.map((s) => ({ Item: typeof s.Item === 'string' ? s.Item : 'Unknown', Status: 'Acknowledged' })) }, note: `Settings: ${items.length} item(s) acknowledged` }
  },

  // What the schema's rules above let through (EraseDevice only under device enrollment; DeviceLock also under
  // user enrollment on iOS and visionOS). A real device would lock or erase itself; the simulator
  // acknowledges, notes it, and carries on enrolled.
  DeviceLock(_command, state) {
    state.noted?.push('DeviceLock')
    return { status: 'Acknowledged', fields: {}, note: 'DeviceLock: Acknowledged (noted; the simulated device does not lock)' }
  },

  EraseDevice(_command, state) {
    state.noted?.push('EraseDevice')
    return { status: 'Acknowledged', fields: {}, note: 'EraseDevice: Acknowledged (noted; the simulated device erases nothing)' }
  },

  DeclarativeManagement() {
    return { status: 'Acknowledged', fields: {}, note: 'DeclarativeManagement: Acknowledged, syncing', sync: true }
  },
}

/** Every DeviceInformation query this device answers under its enrollment. */
function deviceInformation(state: DeviceState): Record<string, PlistValue> {
  const m = state.model
  if (state.enrollment === 'device') {
    // Device enrollment: the device names itself by UDID and has no EnrollmentID; an organisation-owned
    // iPhone, iPad or Vision Pro enrolled this way is not supervised, a Mac is (PROVENANCE.md, ADDE).
    const { EnrollmentID: _e, DeviceID: _d, ...common } = userEnrollmentInformation(state)
    return { ...common, UDID: state.udid ?? '', SerialNumber: state.serialNumber ?? '', IsSupervised: m.platform === 'macOS' }
  }
  return userEnrollmentInformation(state)
}

function userEnrollmentInformation(state: DeviceState): Record<string, PlistValue> {
  const m = state.model
  return {
    DeviceName: m.deviceName,
    OSVersion: m.osVersion,
    BuildVersion: m.buildVersion,
    ProductName: m.productName,
    Model: m.model ?? m.productName,
    ModelName: m.modelName,
    EnrollmentID: state.enrollmentId,
    IsSupervised: false,
    IsMultiUser: false,
    IsCloudBackupEnabled: true,
    AwaitingConfiguration: false,
    Languages: ['en-US'],
    Locales: ['en_US'],
    DeviceID: state.enrollmentId,
  }
}

/** The profile inside InstallProfile's Payload, signed or not; undefined when unreadable. */
function readProfile(payload: Uint8Array): InstalledProfile | undefined {
  let content: Uint8Array = payload
  try {
    if (payload[0] === 0x30) content = parseSignedData(payload).content ?? payload
    const dict = parsePlistDict(content)
    if (dict.PayloadType !== 'Configuration' || typeof dict.PayloadIdentifier !== 'string' || typeof dict.PayloadUUID !== 'string') return undefined
    return profileSummary(dict)
  } catch {
    return undefined
  }
}

/** A profile as ProfileList shows it: the top-level keys and a summary of each payload. */
export function profileSummary(dict: PlistDict): InstalledProfile {
  const payloads = Array.isArray(dict.PayloadContent) ? dict.PayloadContent.filter(isDict) : []
  return {
    PayloadIdentifier: String(dict.PayloadIdentifier),
    PayloadUUID: String(dict.PayloadUUID),
    ...(typeof dict.PayloadDisplayName === 'string' ? { PayloadDisplayName: dict.PayloadDisplayName } : {}),
    ...(typeof dict.PayloadOrganization === 'string' ? { PayloadOrganization: dict.PayloadOrganization } : {}),
    PayloadVersion: typeof dict.PayloadVersion === 'number' ? dict.PayloadVersion : 1,
    PayloadContent: payloads.map((p) => ({
      PayloadType: String(p.PayloadType),
      PayloadIdentifier: String(p.PayloadIdentifier),
      PayloadUUID: String(p.PayloadUUID),
      PayloadVersion: typeof p.PayloadVersion === 'number' ? p.PayloadVersion : 1,
      ...(typeof p.PayloadDisplayName === 'string' ? { PayloadDisplayName: p.PayloadDisplayName } : {}),
    })),
  }
}

function commonNameOf(cert: X509Certificate): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? cert.subject
}
