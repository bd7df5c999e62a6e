import { describe, expect, it } from 'vitest'
import { buildPlist } from '../../src/protocol/plist.js'
import { channelId, CheckinFormatError, isDeviceEnrollment, parseCheckin, parseCommandReport } from '../../src/protocol/checkin.js'
import { fixtureBytes } from '../helpers/fixtures.js'

const plist = (value: Record<string, unknown>) => Buffer.from(buildPlist(value as never))

describe('parseCheckin with recorded messages', () => {
  it('reads Authenticate without UDID or serial number', () => {
    const m = parseCheckin(fixtureBytes('checkin.authenticate.ios18.plist'))
    expect(m.MessageType).toBe('Authenticate')
    if (m.MessageType !== 'Authenticate') throw new Error('unreachable')
    expect(m).toMatchObject({ EnrollmentID: 'FB833D84-50C0-41DD-99DE-F748E44FFEF5', ProductName: 'iPhone12,1', OSVersion: '18.2.1', BuildVersion: '22C161' })
    expect(m.Topic).toMatch(/^com\.apple\.mgmt\./)
  })

  it('reads TokenUpdate with its push token as bytes', () => {
    const m = parseCheckin(fixtureBytes('checkin.token-update.ios18.plist'))
    if (m.MessageType !== 'TokenUpdate') throw new Error(`unexpected ${m.MessageType}`)
    expect(Buffer.from(m.Token).toString('base64')).toBe('ftAoCo4gNk3mxQgFVRXRJfO8qYsMpS46kHClaugCnt8=')
    expect(m.PushMagic).toBe('7B8A04B0-E9B8-4BB3-8A85-4FD5FA1F70E9')
    expect(m.AwaitingConfiguration).toBe(false)
  })

  it('reads the Idle command report', () => {
    const { report } = parseCommandReport(fixtureBytes('command.idle.ios18.plist'))
    expect(report).toMatchObject({ Status: 'Idle', EnrollmentID: 'FB833D84-50C0-41DD-99DE-F748E44FFEF5' })
  })
})

describe('parseCheckin refuses what a user-enrolled device does not send', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['missing MessageType', { EnrollmentID: 'E', Topic: 'com.apple.mgmt.x' }, /MessageType is missing/],
    ['unknown MessageType', { MessageType: 'Hello', EnrollmentID: 'E' }, /unknown MessageType "Hello"/],
    ['wrong type', { MessageType: 'TokenUpdate', EnrollmentID: 'E', Topic: 'com.apple.mgmt.x', Token: 'not-data', PushMagic: 'm' }, /TokenUpdate: Token/],
    ['missing EnrollmentID', { MessageType: 'Authenticate', Topic: 'com.apple.mgmt.x' }, /EnrollmentID/],
    ['MessageType not a string', { MessageType: 5, EnrollmentID: 'E' }, /MessageType is missing/],
  ]
  it.each(cases)('%s', (_name, value, message) => {
    expect(() => parseCheckin(plist(value))).toThrow(message)
    try {
      parseCheckin(plist(value))
    } catch (err) {
      expect(err).toBeInstanceOf(CheckinFormatError)
      expect((err as CheckinFormatError).status).toBe(400)
    }
  })

  it('reads a device-enrollment message (UDID, no EnrollmentID) with the UDID as its EnrollmentID, and says so', () => {
    const message = parseCheckin(plist({ MessageType: 'Authenticate', UDID: '00008110-000A', SerialNumber: 'F2L', Topic: 'com.apple.mgmt.x' }))
    expect(message).toMatchObject({ EnrollmentID: '00008110-000A', UDID: '00008110-000A' })
    expect(isDeviceEnrollment(message)).toBe(true)
    const user = parseCheckin(plist({ MessageType: 'TokenUpdate', UDID: 'U', UserID: 'USER-GUID', Topic: 'com.apple.mgmt.x', Token: new Uint8Array([1]), PushMagic: 'm' }))
    expect(channelId(user)).toBe('U:USER-GUID')
    expect(isDeviceEnrollment(parseCheckin(plist({ MessageType: 'CheckOut', EnrollmentID: 'E', Topic: 'com.apple.mgmt.x' })))).toBe(false)
  })

  it('requires a CommandUUID on results other than Idle', () => {
    expect(() => parseCommandReport(plist({ EnrollmentID: 'E', Status: 'Acknowledged' }))).toThrow(/CommandUUID/)
    expect(() => parseCommandReport(plist({ EnrollmentID: 'E', Status: 'Sleeping' }))).toThrow(/Status/)
  })
})

describe('channelId', () => {
  it('separates the macOS user channel from the device channel', () => {
    expect(channelId({ EnrollmentID: 'D' })).toBe('D')
    expect(channelId({ EnrollmentID: 'D', EnrollmentUserID: 'U' })).toBe('D:U')
  })
})
