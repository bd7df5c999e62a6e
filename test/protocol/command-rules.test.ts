import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { checkCommand, checkDeclaration, checkinRules, commandRules, compareVersions, declarationType, platformOf, requestTypes, type CommandTarget } from '../../src/protocol/command-rules.js'

// Expected answers below are facts read from Apple's schema (release iOS 18.1 / macOS 15.1), each with the
// file it comes from; the tests check that the derived tables and the rules reproduce them.

const userIOS: CommandTarget = { platform: 'iOS', channel: 'device', enrollment: 'user' }
const userMac: CommandTarget = { platform: 'macOS', channel: 'device', enrollment: 'user' }
const addeIOS: CommandTarget = { platform: 'iOS', channel: 'device', enrollment: 'device' }
const addeMac: CommandTarget = { platform: 'macOS', channel: 'device', enrollment: 'device' }

describe('checkCommand: user enrollment', () => {
  it('refuses DeviceLock and EraseDevice on a user-enrolled Mac', () => {
    // mdm/commands/device.lock.yaml and device.erase.yaml: macOS userenrollment mode forbidden.
    expect(checkCommand({ RequestType: 'DeviceLock' }, userMac)).toEqual({
      ok: false,
      rule: 'DeviceLock is forbidden under user enrollment on macOS (Apple schema mdm/commands/device.lock.yaml)',
    })
    expect(checkCommand({ RequestType: 'EraseDevice' }, userMac)).toEqual({
      ok: false,
      rule: 'EraseDevice is forbidden under user enrollment on macOS (Apple schema mdm/commands/device.erase.yaml)',
    })
  })

  it('allows DeviceLock on a user-enrolled iPhone, and refuses EraseDevice there', () => {
    // device.lock.yaml: iOS userenrollment mode allowed; device.erase.yaml: iOS userenrollment mode forbidden.
    expect(checkCommand({ RequestType: 'DeviceLock', Message: 'Call IT' }, userIOS)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'EraseDevice' }, userIOS)).toMatchObject({ ok: false, rule: expect.stringContaining('forbidden under user enrollment on iOS') })
  })

  it('allows DeviceInformation, but not the queries user enrollment forbids', () => {
    // information.device.yaml: the command is allowed under user enrollment on all three platforms;
    // the Queries values UDID and SerialNumber are forbidden there, DevicePropertiesAttestation allowed.
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion', 'ProductName', 'DevicePropertiesAttestation'] }, userIOS)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion'] }, userMac)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion', 'UDID'] }, userIOS)).toEqual({
      ok: false,
      rule: 'DeviceInformation with Queries[UDID] is forbidden under user enrollment on iOS (Apple schema mdm/commands/information.device.yaml)',
    })
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['SerialNumber'] }, userMac)).toMatchObject({ ok: false })
    // The same queries are fine on an account-driven device enrollment.
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['UDID', 'SerialNumber'] }, addeIOS)).toEqual({ ok: true })
  })

  it('refuses InstallApplication with ChangeManagementState under user enrollment only', () => {
    // application.install.yaml: ChangeManagementState has userenrollment mode forbidden on iOS, macOS, visionOS.
    const install = { RequestType: 'InstallApplication', iTunesStoreID: 361309726, ChangeManagementState: 'Managed' }
    expect(checkCommand(install, userIOS)).toEqual({
      ok: false,
      rule: 'InstallApplication with ChangeManagementState is forbidden under user enrollment on iOS (Apple schema mdm/commands/application.install.yaml)',
    })
    const { ChangeManagementState: _, ...withoutIt } = install
    expect(checkCommand(withoutIt, userIOS)).toEqual({ ok: true })
    expect(checkCommand(install, addeIOS)).toEqual({ ok: true })
  })

  it('passes unknown keys and keys user enrollment does not restrict', () => {
    expect(checkCommand({ RequestType: 'DeviceLock', KeyFromAFutureRelease: true }, userIOS)).toEqual({ ok: true })
  })
})

describe('checkCommand: macOS channels', () => {
  it('refuses a user-channel-only command on the device channel', () => {
    // application.extensions.listactive.yaml (ActiveNSExtensions): macOS devicechannel false, userchannel true.
    expect(checkCommand({ RequestType: 'ActiveNSExtensions' }, addeMac)).toEqual({
      ok: false,
      rule: 'ActiveNSExtensions is not supported on the macOS device channel (Apple schema mdm/commands/application.extensions.listactive.yaml)',
    })
    expect(checkCommand({ RequestType: 'ActiveNSExtensions' }, { ...addeMac, channel: 'user' })).toEqual({ ok: true })
  })

  it('refuses a device-channel-only command on the user channel', () => {
    // application.install.enterprise.yaml: macOS devicechannel true, userchannel false, userenrollment allowed.
    expect(checkCommand({ RequestType: 'InstallEnterpriseApplication' }, userMac)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'InstallEnterpriseApplication' }, { ...userMac, channel: 'user' })).toMatchObject({
      ok: false,
      rule: expect.stringContaining('not supported on the macOS user channel'),
    })
  })

  it('applies key-level channel rules (DeviceInformation ActiveManagedUsers: macOS userchannel false)', () => {
    // information.device.yaml: DeviceInformation is on both macOS channels; the ActiveManagedUsers query is not on the user channel.
    const onUserChannel: CommandTarget = { ...addeMac, channel: 'user' }
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion'] }, onUserChannel)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['ActiveManagedUsers'] }, onUserChannel)).toMatchObject({ ok: false })
  })

  it('refuses the user channel on iOS, which only Shared iPad has', () => {
    expect(checkCommand({ RequestType: 'DeviceInformation', Queries: ['OSVersion'] }, { ...userIOS, channel: 'user' })).toMatchObject({ ok: false })
  })
})

describe('checkCommand: device enrollment, supervision and DEP', () => {
  it('accepts EraseDevice for an account-driven device enrollment on iOS', () => {
    // device.erase.yaml: iOS introduced 4.0, supervised false, requiresdep false.
    expect(checkCommand({ RequestType: 'EraseDevice', PIN: '123456' }, addeIOS)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'EraseDevice' }, { ...addeIOS, osVersion: '17.5' })).toEqual({ ok: true })
  })

  it('refuses supervised-only commands on iPhone for both enrollments', () => {
    // device.lostmode.enable.yaml: iOS supervised true, macOS n/a.
    expect(checkCommand({ RequestType: 'EnableLostMode', Message: 'Lost' }, addeIOS)).toMatchObject({ ok: false, rule: expect.stringContaining('requires a supervised device on iOS') })
    expect(checkCommand({ RequestType: 'EnableLostMode', Message: 'Lost' }, userIOS)).toMatchObject({ ok: false })
    expect(checkCommand({ RequestType: 'EnableLostMode' }, addeMac)).toEqual({
      ok: false,
      rule: 'EnableLostMode is not available on macOS (Apple schema mdm/commands/device.lostmode.enable.yaml)',
    })
  })

  it('treats a Mac in account-driven device enrollment as supervised', () => {
    // remotedesktop.enable.yaml: macOS supervised true, userenrollment forbidden. Device Enrollment supervises
    // a Mac from macOS 11 (Apple Platform Deployment, depd1c27dfe6), and ADDE needs macOS 14.
    expect(checkCommand({ RequestType: 'EnableRemoteDesktop' }, addeMac)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'EnableRemoteDesktop' }, userMac)).toMatchObject({ ok: false })
  })

  it('refuses DEP-only commands and Shared-iPad-only commands', () => {
    // device.configured.yaml: requiresdep true on iOS and macOS. user.list.yaml: iOS sharedipad mode required.
    expect(checkCommand({ RequestType: 'DeviceConfigured' }, addeMac)).toMatchObject({ ok: false, rule: expect.stringContaining('Automated Device Enrollment') })
    expect(checkCommand({ RequestType: 'DeviceConfigured' }, addeIOS)).toMatchObject({ ok: false })
    expect(checkCommand({ RequestType: 'UserList' }, addeIOS)).toMatchObject({ ok: false, rule: expect.stringContaining('Shared iPad') })
  })

  it('applies supervision to Settings items (settings.yaml: DeviceName is supervised-only on iOS)', () => {
    expect(checkCommand({ RequestType: 'Settings', Settings: [{ Item: 'DeviceName', DeviceName: 'Kiosk' }] }, addeIOS)).toMatchObject({ ok: false, rule: expect.stringContaining('Settings[Item=DeviceName]') })
    // On macOS DeviceName is only forbidden under user enrollment.
    expect(checkCommand({ RequestType: 'Settings', Settings: [{ Item: 'DeviceName', DeviceName: 'Lab Mac' }] }, addeMac)).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'Settings', Settings: [{ Item: 'DeviceName', DeviceName: 'Lab Mac' }] }, userMac)).toMatchObject({ ok: false })
    expect(checkCommand({ RequestType: 'Settings', Settings: [{ Item: 'ApplicationAttributes', Identifier: 'com.example.app', Attributes: {} }] }, userIOS)).toEqual({ ok: true })
  })
})

describe('checkCommand: versions and unknowns', () => {
  it('refuses a command introduced after the device OS', () => {
    // declarativemanagement.yaml: iOS introduced 15.0.
    expect(checkCommand({ RequestType: 'DeclarativeManagement' }, { ...userIOS, osVersion: '14.8.1' })).toEqual({
      ok: false,
      rule: 'DeclarativeManagement needs iOS 15.0 or later; the device runs 14.8.1 (Apple schema mdm/commands/declarativemanagement.yaml)',
    })
    expect(checkCommand({ RequestType: 'DeclarativeManagement' }, { ...userIOS, osVersion: '15' })).toEqual({ ok: true })
    expect(checkCommand({ RequestType: 'DeclarativeManagement' }, { ...userIOS, osVersion: '17.4.1' })).toEqual({ ok: true })
  })

  it('refuses an unknown or missing RequestType', () => {
    expect(checkCommand({ RequestType: 'MakeCoffee' }, userIOS)).toMatchObject({ ok: false, rule: expect.stringContaining('MakeCoffee is not a command in Apple') })
    expect(checkCommand({ RequestType: 'toString' }, userIOS)).toMatchObject({ ok: false })
    expect(checkCommand({}, userIOS)).toEqual({ ok: false, rule: 'The command has no RequestType' })
  })

  it('applies every platform when the platform is unknown', () => {
    // device.lock.yaml: allowed under user enrollment on iOS and visionOS, forbidden on macOS.
    const unknown: CommandTarget = { channel: 'device', enrollment: 'user' }
    expect(checkCommand({ RequestType: 'DeviceLock' }, unknown)).toMatchObject({ ok: false, rule: expect.stringContaining('on macOS') })
    expect(checkCommand({ RequestType: 'ProfileList' }, unknown)).toEqual({ ok: true })
  })
})

describe('derived tables', () => {
  it('lists RequestTypes, not check-in messages', () => {
    const types = requestTypes()
    expect(types).toEqual([...types].sort())
    expect(types).toEqual(expect.arrayContaining(['DeviceInformation', 'EraseDevice', 'InstallApplication', 'Settings', 'DeclarativeManagement']))
    expect(types).not.toContain('Authenticate')
  })

  it('reads userenrollment, channels and versions as the YAML states them', () => {
    // device.lock.yaml: macOS introduced 10.7, devicechannel true, userchannel false.
    expect(commandRules('DeviceLock')?.platforms.macOS).toMatchObject({ available: true, introduced: '10.7', userEnrollment: 'forbidden', deviceChannel: true, userChannel: false })
    // device.erase.yaml: tvOS has no userenrollment entry; docs/schema.yaml: absent means allowed.
    expect(commandRules('EraseDevice')?.platforms.tvOS).toMatchObject({ available: true, userEnrollment: 'allowed' })
    // device.lostmode.enable.yaml: macOS introduced n/a.
    expect(commandRules('EnableLostMode')?.platforms.macOS).toEqual({ available: false })
    // application.install.enterprise.yaml: macOS introduced 10.13.6.
    expect(commandRules('InstallEnterpriseApplication')?.platforms.macOS).toMatchObject({ introduced: '10.13.6' })
  })

  it('derives the account-driven device enrollment column', () => {
    expect(commandRules('EraseDevice')?.platforms.iOS).toMatchObject({ accountDrivenDeviceEnrollment: true })
    expect(commandRules('EnableLostMode')?.platforms.iOS).toMatchObject({ accountDrivenDeviceEnrollment: false })
    expect(commandRules('DeviceConfigured')?.platforms.macOS).toMatchObject({ accountDrivenDeviceEnrollment: false })
    expect(commandRules('EnableRemoteDesktop')?.platforms.macOS).toMatchObject({ accountDrivenDeviceEnrollment: true })
  })

  it('has the check-in messages with their channels', () => {
    // mdm/checkin/authenticate.yaml: macOS devicechannel true, userchannel false; userauthenticate.yaml: the reverse.
    expect(checkinRules('Authenticate')?.platforms.macOS).toMatchObject({ userEnrollment: 'allowed', deviceChannel: true, userChannel: false })
    expect(checkinRules('UserAuthenticate')?.platforms.macOS).toMatchObject({ userEnrollment: 'forbidden', deviceChannel: false, userChannel: true })
    // tokenupdate.yaml: UDID is forbidden and EnrollmentID required under user enrollment.
    expect(checkinRules('TokenUpdate')?.platforms.iOS).toMatchObject({
      keys: expect.arrayContaining([expect.objectContaining({ path: 'UDID', userEnrollment: 'forbidden' }), expect.objectContaining({ path: 'EnrollmentID', userEnrollment: 'required' })]),
    })
  })
})

describe('platformOf', () => {
  it('maps ProductName to the schema platform', () => {
    const cases: Record<string, string | undefined> = {
      'iPhone12,1': 'iOS',
      'iPad13,4': 'iOS',
      'MacBookPro18,1': 'macOS',
      'Mac14,2': 'macOS',
      'VirtualMac2,1': 'macOS',
      'RealityDevice14,1': 'visionOS',
      'AppleTV11,1': undefined,
      'Watch6,1': undefined,
    }
    for (const [product, platform] of Object.entries(cases)) expect(platformOf(product), product).toBe(platform)
  })

  it('falls back to the model family', () => {
    expect(platformOf(undefined, 'iPad')).toBe('iOS')
    expect(platformOf('iPod9,1', 'iPhone')).toBe('iOS')
    expect(platformOf(undefined, 'Mac')).toBe('macOS')
    expect(platformOf()).toBeUndefined()
  })

  it('compares dotted versions', () => {
    expect(compareVersions('10.13.6', '10.13')).toBeGreaterThan(0)
    expect(compareVersions('10.9', '10.13.6')).toBeLessThan(0)
    expect(compareVersions('17', '17.0.0')).toBe(0)
    expect(compareVersions('17.0 beta', '17.0')).toBeUndefined()
  })
})

describe('checkDeclaration', () => {
  const activation = { Type: 'com.apple.activation.simple', Identifier: 'a1', ServerToken: 't1', Payload: { StandardConfigurations: ['c1'] } }

  it('accepts a valid declaration and unknown payload keys', () => {
    expect(checkDeclaration(activation)).toEqual({ ok: true })
    expect(checkDeclaration({ ...activation, Payload: { ...activation.Payload, KeyFromAFutureRelease: 1 } })).toEqual({ ok: true })
  })

  it('checks the envelope (declarationbase.yaml: Type, Identifier, ServerToken, Payload are required)', () => {
    expect(checkDeclaration({ ...activation, Type: 'com.example.nothing' })).toMatchObject({ ok: false })
    expect(checkDeclaration({ ...activation, Identifier: '' })).toMatchObject({ ok: false, rule: expect.stringContaining('Identifier') })
    expect(checkDeclaration({ ...activation, ServerToken: 7 })).toMatchObject({ ok: false, rule: expect.stringContaining('ServerToken') })
    expect(checkDeclaration({ ...activation, Payload: [] })).toMatchObject({ ok: false, rule: expect.stringContaining('Payload') })
    expect(checkDeclaration('not a declaration')).toMatchObject({ ok: false })
  })

  it('checks required keys and types', () => {
    // activations/simple.yaml: StandardConfigurations <array> required.
    expect(checkDeclaration({ ...activation, Payload: {} })).toEqual({
      ok: false,
      rule: 'com.apple.activation.simple requires Payload.StandardConfigurations (Apple schema declarative/declarations/activations/simple.yaml)',
    })
    expect(checkDeclaration({ ...activation, Payload: { StandardConfigurations: 'c1' } })).toMatchObject({ ok: false, rule: expect.stringContaining('must be an array') })
    // configurations/passcode.settings.yaml: MinimumLength <integer> optional.
    const passcode = { Type: 'com.apple.configuration.passcode.settings', Identifier: 'p', ServerToken: '1' }
    expect(checkDeclaration({ ...passcode, Payload: { MinimumLength: 6 } })).toEqual({ ok: true })
    expect(checkDeclaration({ ...passcode, Payload: { MinimumLength: '6' } })).toMatchObject({ ok: false })
    expect(checkDeclaration({ ...passcode, Payload: { MinimumLength: 6.5 } })).toMatchObject({ ok: false })
    // management/properties.yaml: a single ANY key, so any property is accepted.
    expect(checkDeclaration({ Type: 'com.apple.management.properties', Identifier: 'm', ServerToken: '1', Payload: { Department: 'Sales', Floor: 3 } })).toEqual({ ok: true })
  })

  it('checks allowed-enrollments and versions for a target', () => {
    // passcode.settings.yaml: iOS allowed-enrollments include user; macOS only supervised and local.
    const passcode = { Type: 'com.apple.configuration.passcode.settings', Identifier: 'p', ServerToken: '1', Payload: { MinimumLength: 6 } }
    expect(checkDeclaration(passcode, { platform: 'iOS', enrollment: 'user' })).toEqual({ ok: true })
    expect(checkDeclaration(passcode, { platform: 'macOS', enrollment: 'user' })).toMatchObject({ ok: false, rule: expect.stringContaining('not allowed in user enrollment on macOS') })
    expect(checkDeclaration(passcode, { platform: 'macOS', enrollment: 'device' })).toEqual({ ok: true })
    // softwareupdate.settings.yaml: iOS allows supervised and device; its Deferrals key only supervised.
    const updates = { Type: 'com.apple.configuration.softwareupdate.settings', Identifier: 's', ServerToken: '1', Payload: { Notifications: true } }
    expect(checkDeclaration(updates, { platform: 'iOS', enrollment: 'device' })).toEqual({ ok: true })
    expect(checkDeclaration(updates, { platform: 'iOS', enrollment: 'user' })).toMatchObject({ ok: false })
    expect(checkDeclaration({ ...updates, Payload: { Deferrals: {} } }, { platform: 'iOS', enrollment: 'device' })).toMatchObject({ ok: false, rule: expect.stringContaining('Payload.Deferrals') })
    // app.managed.yaml: iOS introduced 17.2, macOS n/a.
    const app = { Type: 'com.apple.configuration.app.managed', Identifier: 'app', ServerToken: '1', Payload: { AppStoreID: '361309726' } }
    expect(checkDeclaration(app, { platform: 'iOS', osVersion: '17.1', enrollment: 'user' })).toMatchObject({ ok: false, rule: expect.stringContaining('17.2') })
    expect(checkDeclaration(app, { platform: 'iOS', osVersion: '17.2', enrollment: 'user' })).toEqual({ ok: true })
    expect(checkDeclaration(app, { platform: 'macOS', enrollment: 'device' })).toMatchObject({ ok: false })
  })

  it('knows every category and leaves credential documents out', () => {
    expect(declarationType('com.apple.configuration.legacy')).toMatchObject({ category: 'configuration', keys: { ProfileURL: { type: 'string', presence: 'required' } } })
    expect(declarationType('com.apple.asset.data')?.category).toBe('asset')
    expect(declarationType('com.apple.management.server-capabilities')?.category).toBe('management')
    expect(declarationType('com.apple.activation.simple')?.category).toBe('activation')
    // assets/credentials/acme.yaml describes the document an asset points at (credentialtype), not a declaration.
    expect(declarationType('com.apple.credential.acme')).toBeUndefined()
  })
})

describe('derivation', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
  const schema = process.env.APPLE_SCHEMA_DIR ?? path.resolve(root, '../shared/apple-schema')

  // The only test that reads the schema: users' clones do not have it, and nothing else may need it.
  it.skipIf(!existsSync(schema))('the committed tables are what the script derives from the schema', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'apple-schema-'))
    try {
      execFileSync(process.execPath, [path.join(root, 'scripts/derive-apple-schema.mjs'), schema, '--out-dir', out], { stdio: 'pipe' })
      for (const name of ['commands.json', 'declarations.json']) {
        expect(readFileSync(path.join(out, name), 'utf8'), name).toBe(readFileSync(path.join(root, 'src/protocol/apple', name), 'utf8'))
      }
    } finally {
      rmSync(out, { recursive: true, force: true })
    }
  })
})
