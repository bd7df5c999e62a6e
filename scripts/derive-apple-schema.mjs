// Derives the tables in src/protocol/apple/ from Apple's device-management schema (MIT),
// github.com/apple/device-management: which MDM commands and check-in messages exist on which platform,
// how user enrollment, channels, supervision and DEP restrict them (command and key by key), every
// declaration type with its payload keys, and the configuration-profile payloads the server emits with
// their keys, types, allowed values and user-enrollment modes. src/protocol/command-rules.ts reads
// commands.json and declarations.json, src/protocol/profile-schema.ts reads profiles.json.
//
//   node scripts/derive-apple-schema.mjs [path-to-apple-schema] [--out-dir DIR]
//
// The schema defaults to ../shared/apple-schema beside the repository. Only this script reads it: the
// derived JSON is committed, so the server and the tests never need the schema. Output is deterministic
// (sorted keys, no timestamps in the JSON); PROVENANCE.md keeps its date when the JSON did not change, so
// re-running on the same schema leaves the tree unchanged.
//
// How the schema's fields are read is docs/schema.md and docs/schema.yaml of the schema itself; the
// choices this script makes where those documents are silent are written into PROVENANCE.md.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const OUT = 'src/protocol/apple'
const OSES = ['iOS', 'macOS', 'tvOS', 'visionOS', 'watchOS']
/** Platforms where account-driven enrollment exists (iOS/iPadOS 17, macOS 14, visionOS 1.1). */
const ACCOUNT_DRIVEN_OSES = ['iOS', 'macOS', 'visionOS']
const UE_MODES = ['allowed', 'required', 'forbidden', 'ignored']

function main(argv) {
  let schemaDir
  let outDir = path.join(ROOT, OUT)
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out-dir') outDir = path.resolve(argv[++i] ?? fail('--out-dir needs a directory'))
    else if (argv[i].startsWith('-')) fail(`unknown option ${argv[i]}`)
    else schemaDir = path.resolve(argv[i])
  }
  schemaDir ??= path.resolve(ROOT, '../shared/apple-schema')
  if (!existsSync(path.join(schemaDir, 'mdm/commands'))) fail(`${schemaDir} is not Apple's device-management schema (no mdm/commands)`)

  const release = schemaRelease(schemaDir)
  const stats = { userEnrollmentDefaulted: {}, channelDefaulted: {}, notDerived: [] }
  const source = { repository: 'github.com/apple/device-management', license: 'MIT', release }
  const commands = { source, commands: deriveMessages(schemaDir, 'mdm/commands', stats), checkin: deriveMessages(schemaDir, 'mdm/checkin', stats) }
  const declarations = { source, base: deriveBase(schemaDir), declarations: deriveDeclarations(schemaDir, stats) }
  const profileStats = { userEnrollmentDefaulted: {}, presenceDefaulted: {}, placeholders: [], notDerived: [] }
  const profiles = { source, ...deriveProfiles(schemaDir, profileStats) }

  mkdirSync(outDir, { recursive: true })
  const files = { 'commands.json': json(commands), 'declarations.json': json(declarations), 'profiles.json': json(profiles) }
  const unchanged = Object.entries(files).every(([name, text]) => readIfExists(path.join(outDir, name)) === text)
  const previousDate = /^Derived on: (\d{4}-\d{2}-\d{2})$/m.exec(readIfExists(path.join(outDir, 'PROVENANCE.md')) ?? '')?.[1]
  const date = unchanged && previousDate ? previousDate : new Date().toISOString().slice(0, 10)
  files['PROVENANCE.md'] = provenance({ release, date, commands, declarations, profiles, stats, profileStats })
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(outDir, name), text)
  console.log(`${Object.keys(commands.commands).length} commands, ${Object.keys(commands.checkin).length} check-in messages, ${Object.keys(declarations.declarations).length} declaration types, ${Object.keys(profiles.payloads).length} profile payload types -> ${path.relative(process.cwd(), outDir) || '.'}`)
}

function fail(message) {
  console.error(`derive-apple-schema: ${message}`)
  process.exit(1)
}

function readIfExists(file) {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined
}

/** The copy's README names its release (`release "iOS 18.1 / macOS 15.1"`); docs/errata.md's first heading is the fallback. */
function schemaRelease(dir) {
  const readme = readIfExists(path.join(dir, 'README.md')) ?? ''
  const fromReadme = /release "([^"]+)"/.exec(readme)?.[1]
  if (fromReadme) return fromReadme
  const errata = readIfExists(path.join(dir, 'docs/errata.md')) ?? ''
  return /^## (.+)$/m.exec(errata)?.[1]?.trim() ?? 'unknown'
}

/** Stable JSON: keys sorted at every level, two-space indent, trailing newline. */
function json(value) {
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (isObject(value)) return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]))
  return value
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function yamlFiles(dir) {
  const out = []
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name)
    if (statSync(full).isDirectory()) out.push(...yamlFiles(full))
    else if (name.endsWith('.yaml')) out.push(full)
  }
  return out
}

function load(schemaDir, file) {
  const doc = parse(readFileSync(file, 'utf8'))
  checkVersions(doc, path.relative(schemaDir, file))
  return doc
}

/**
 * YAML reads an unquoted `introduced: 10.10` as the number 10.1. Apple quotes two-part versions, but a
 * number here would silently compare wrong, so refuse it.
 */
function checkVersions(node, file) {
  if (Array.isArray(node)) return node.forEach((n) => checkVersions(n, file))
  if (!isObject(node)) return
  for (const [k, v] of Object.entries(node)) {
    if (['introduced', 'deprecated', 'removed'].includes(k) && typeof v !== 'string') throw new Error(`${file}: ${k} ${v} is not a quoted version`)
    checkVersions(v, file)
  }
}

// --- supportedOS -----------------------------------------------------------------------------------

/**
 * docs/schema.md: a payload key "inherits" the payload's supportedOS, updated by the key's own values.
 * Nested objects (userenrollment, sharedipad) merge one level deep, so `sharedipad: {devicechannel: false}`
 * on a key keeps the payload's sharedipad mode.
 */
function inherit(parent, own) {
  const out = {}
  for (const os of OSES) {
    if (!parent?.[os] && !own?.[os]) continue
    const merged = { ...(parent?.[os] ?? {}) }
    for (const [k, v] of Object.entries(own?.[os] ?? {})) merged[k] = isObject(v) && isObject(merged[k]) ? { ...merged[k], ...v } : v
    out[os] = merged
  }
  return out
}

function available(s) {
  return s !== undefined && typeof s.introduced === 'string' && s.introduced !== 'n/a'
}

/**
 * The effective rules of one platform's supportedOS entry, with the defaults this script applies where
 * the entry is silent (PROVENANCE.md lists them).
 */
function effective(s) {
  return {
    // docs/schema.yaml, userenrollment: "If this key is not present, then the corresponding payload or
    // payload key can be used both with or without user enrollment in effect" -> allowed.
    userEnrollment: s.userenrollment?.mode ?? 'allowed',
    // schema.md gives no default for the channels: the device channel is where every MDM command goes
    // unless Apple says otherwise; the user channel (macOS, Shared iPad) only where Apple says so.
    deviceChannel: s.devicechannel ?? true,
    userChannel: s.userchannel ?? false,
    supervised: s.supervised ?? false,
    requiresDEP: s.requiresdep ?? false,
    sharedIPadRequired: s.sharedipad?.mode === 'required',
  }
}

function platformEntry(os, s, stats, where) {
  if (!available(s)) return { available: false }
  const e = effective(s)
  if (!UE_MODES.includes(e.userEnrollment)) throw new Error(`${where}: userenrollment mode ${e.userEnrollment}`)
  if (s.userenrollment?.mode === undefined) count(stats.userEnrollmentDefaulted, os)
  if (os === 'macOS' && (s.devicechannel === undefined || s.userchannel === undefined)) count(stats.channelDefaulted, `${where} macOS`)
  const entry = {
    available: true,
    introduced: s.introduced,
    accessRights: s.accessrights ?? null,
    userEnrollment: e.userEnrollment,
    deviceChannel: e.deviceChannel,
    userChannel: e.userChannel,
    supervised: e.supervised,
    requiresDEP: e.requiresDEP,
    accountDrivenDeviceEnrollment: accountDrivenDeviceEnrollment(os, e),
  }
  if (s.deprecated) entry.deprecated = s.deprecated
  if (s.removed) entry.removed = s.removed
  if (s.userapprovedmdm !== undefined) entry.userApprovedMDM = s.userapprovedmdm
  if (s.userenrollment?.behavior) entry.userEnrollmentBehavior = s.userenrollment.behavior
  if (s.sharedipad) {
    entry.sharedIPad = { mode: s.sharedipad.mode ?? 'allowed' }
    if (s.sharedipad.devicechannel !== undefined) entry.sharedIPad.deviceChannel = s.sharedipad.devicechannel
    if (s.sharedipad.userchannel !== undefined) entry.sharedIPad.userChannel = s.sharedipad.userchannel
  }
  return entry
}

/**
 * Account-driven device enrollment (ADDE) has no flag in the schema. An ADDE device is never enrolled
 * through ADE/DEP, so `requiresdep` refuses. iPhone, iPad and Vision Pro enrolled this way are not
 * supervised, so `supervised` refuses there; a Mac is: "On Mac computers using macOS 11 or later, Device
 * Enrollment also enforces supervision on the Mac" (support.apple.com/guide/deployment/depd1c27dfe6), and
 * ADDE needs macOS 14. The schema agrees: no macOS declaration lists `device` in allowed-enrollments.
 */
function accountDrivenDeviceEnrollment(os, e) {
  if (!ACCOUNT_DRIVEN_OSES.includes(os)) return false
  if (e.requiresDEP || e.sharedIPadRequired) return false
  return os === 'macOS' || !e.supervised
}

function count(table, key) {
  table[key] = (table[key] ?? 0) + 1
}

// --- key rules -------------------------------------------------------------------------------------

/**
 * Walks a command's payload keys and returns, per platform, the keys (and array values) that are more
 * restricted than what contains them: forbidden or ignored under user enrollment, supervised-only,
 * DEP-only, not on one channel, Shared iPad only. A path is a list of segments that
 * src/protocol/command-rules.ts matches against a command:
 *   {key: K}    the dictionary key K
 *   {value: V}  an array of strings containing V (DeviceInformation's Queries)
 *   {item: V}   an array of dictionaries, the ones whose `Item` is V (Settings)
 *   {each: true} every dictionary of an array
 */
function keyRules(payloadkeys, support, file, stats) {
  const rules = Object.fromEntries(OSES.map((os) => [os, []]))
  const visit = (keys, parentSupport, segments) => {
    for (const key of keys ?? []) {
      if (key.key === 'ANY') continue
      const own = inherit(parentSupport, key.supportedOS)
      const here = [...segments, { key: key.key }]
      addRules(rules, parentSupport, own, here)
      descend(key, own, here)
    }
  }
  const descend = (key, own, here) => {
    if (!key.subkeys?.length) return
    if (key.type === '<dictionary>') return visit(key.subkeys, own, here)
    if (key.type !== '<array>') return
    const items = key.subkeys
    if (items.length === 1 && items[0].type === '<dictionary>') {
      return visit(items[0].subkeys, inherit(own, items[0].supportedOS), [...here, { each: true }])
    }
    if (items.length === 1 && items[0].subkeys?.length) {
      // An array of scalars whose possible values are listed as subkeys (schema.md, "<array> container").
      const itemSupport = inherit(own, items[0].supportedOS)
      for (const value of items[0].subkeys) {
        const valueSupport = inherit(itemSupport, value.supportedOS)
        addRules(rules, itemSupport, valueSupport, [...here, { value: value.key }])
      }
      return
    }
    if (items.length > 1 && items.every((i) => i.type === '<dictionary>' && discriminator(i))) {
      // Several dictionary shapes told apart by their `Item` string (the Settings command).
      for (const item of items) {
        const itemSupport = inherit(own, item.supportedOS)
        const seg = [...here, { item: discriminator(item) }]
        addRules(rules, own, itemSupport, seg)
        visit(item.subkeys.filter((k) => k.key !== 'Item'), itemSupport, seg)
      }
      return
    }
    if (items.length === 1) return
    stats.notDerived.push(`${file}: ${pathString(here)} is an array of ${items.length} shapes without an Item discriminator`)
  }
  visit(payloadkeys, support, [])
  for (const os of OSES) rules[os].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return rules
}

function discriminator(item) {
  const itemKey = item.subkeys?.find((k) => k.key === 'Item')
  return itemKey?.rangelist?.length === 1 ? String(itemKey.rangelist[0]) : undefined
}

function addRules(rules, parentSupport, own, segments) {
  for (const os of OSES) {
    if (!available(parentSupport[os]) || !available(own[os])) continue
    const before = effective(parentSupport[os])
    const after = effective(own[os])
    const rule = {}
    if (after.userEnrollment !== before.userEnrollment && after.userEnrollment !== 'allowed') rule.userEnrollment = after.userEnrollment
    if (after.supervised && !before.supervised) rule.supervised = true
    if (after.requiresDEP && !before.requiresDEP) rule.requiresDEP = true
    if (!after.deviceChannel && before.deviceChannel) rule.deviceChannel = false
    if (!after.userChannel && before.userChannel) rule.userChannel = false
    if (after.sharedIPadRequired && !before.sharedIPadRequired) rule.sharedIPadRequired = true
    if (Object.keys(rule).length === 0) continue
    rules[os].push({ path: pathString(segments), segments, ...rule })
  }
}

function pathString(segments) {
  let out = ''
  for (const s of segments) {
    if ('key' in s) out += out ? `.${s.key}` : s.key
    else if ('value' in s) out += `[${s.value}]`
    else if ('item' in s) out += `[Item=${s.item}]`
    else out += '[]'
  }
  return out
}

// --- commands and check-in -------------------------------------------------------------------------

function deriveMessages(schemaDir, sub, stats) {
  const out = {}
  for (const file of yamlFiles(path.join(schemaDir, sub))) {
    const rel = path.relative(schemaDir, file).split(path.sep).join('/')
    const doc = load(schemaDir, file)
    const name = doc.payload?.requesttype
    if (!name) throw new Error(`${rel}: no payload.requesttype`)
    if (out[name]) throw new Error(`${rel}: ${name} already defined in ${out[name].file}`)
    const support = doc.payload.supportedOS ?? {}
    const rules = keyRules(doc.payloadkeys, support, rel, stats)
    const platforms = {}
    for (const os of OSES) {
      const entry = platformEntry(os, support[os], stats, rel)
      if (entry.available) entry.keys = rules[os]
      platforms[os] = entry
    }
    out[name] = { file: rel, title: doc.title, platforms }
  }
  return out
}

// --- declarations ----------------------------------------------------------------------------------

const CATEGORY = { activations: 'activation', configurations: 'configuration', assets: 'asset', management: 'management' }
const TYPES = { '<string>': 'string', '<integer>': 'integer', '<real>': 'real', '<boolean>': 'boolean', '<date>': 'date', '<data>': 'data', '<array>': 'array', '<dictionary>': 'dictionary', '<any>': 'any' }

function deriveBase(schemaDir) {
  const rel = 'declarative/declarations/declarationbase.yaml'
  const doc = load(schemaDir, path.join(schemaDir, rel))
  return { file: rel, keys: payloadKeys(doc.payloadkeys, {}, rel).keys }
}

function deriveDeclarations(schemaDir, stats) {
  const root = path.join(schemaDir, 'declarative/declarations')
  const out = {}
  for (const file of yamlFiles(root)) {
    const rel = path.relative(schemaDir, file).split(path.sep).join('/')
    const dir = path.relative(root, file).split(path.sep)[0]
    const doc = load(schemaDir, file)
    const type = doc.payload?.declarationtype
    // declarationbase.yaml (type "any") is the envelope; assets/credentials/*.yaml describe the documents
    // an asset points at (credentialtype), not declarations.
    if (!type || type === 'any') continue
    const category = CATEGORY[dir]
    if (!category || !type.startsWith(`com.apple.${category}.`)) throw new Error(`${rel}: ${type} in ${dir}/`)
    const support = doc.payload.supportedOS ?? {}
    const platforms = {}
    for (const os of OSES) platforms[os] = declarationPlatform(support[os])
    const { keys, anyKeys } = payloadKeys(doc.payloadkeys, support, rel)
    const entry = { file: rel, title: doc.title, category, platforms, keys, anyKeys }
    if (doc.payload.apply) entry.apply = doc.payload.apply
    if (doc.payload.beta) entry.beta = true
    out[type] = entry
  }
  return out
}

/**
 * Declarations say who may receive them with `allowed-enrollments` (supervised, device, user, local),
 * not `userenrollment`. Activations, assets and management declarations carry no list: they go with
 * whatever they are attached to, so they are open to every enrollment (allowedEnrollments: null).
 */
function declarationPlatform(s) {
  if (!available(s)) return { available: false }
  const allowed = s['allowed-enrollments'] ?? null
  const entry = {
    available: true,
    introduced: s.introduced,
    allowedEnrollments: allowed,
    userEnrollment: allowed === null || allowed.includes('user') ? 'allowed' : 'forbidden',
    allowedScopes: s['allowed-scopes'] ?? null,
  }
  if (s.deprecated) entry.deprecated = s.deprecated
  if (s.removed) entry.removed = s.removed
  return entry
}

/** Top-level payload keys: type, presence, and the platforms where a key differs from its declaration. */
function payloadKeys(keys, support, rel) {
  const out = {}
  let anyKeys = false
  for (const key of keys ?? []) {
    if (key.key === 'ANY') {
      anyKeys = true
      continue
    }
    const type = TYPES[key.type]
    if (!type) throw new Error(`${rel}: ${key.key} has type ${key.type}`)
    const entry = { type, presence: key.presence ?? 'optional' }
    if (key.supportedOS) {
      const own = inherit(support, key.supportedOS)
      const platforms = {}
      for (const os of Object.keys(key.supportedOS).sort()) {
        if (!available(support[os])) continue
        const p = { introduced: available(own[os]) ? own[os].introduced : null }
        if (key.supportedOS[os]['allowed-enrollments']) p.allowedEnrollments = key.supportedOS[os]['allowed-enrollments']
        platforms[os] = p
      }
      if (Object.keys(platforms).length) entry.platforms = platforms
    }
    out[key.key] = entry
  }
  return { keys: out, anyKeys }
}

// --- configuration profiles ------------------------------------------------------------------------

/**
 * The profile schemas of what the server emits (`grep -rn PayloadType src`): the Configuration itself
 * (TopLevel.yaml), the keys every payload has (CommonPayloadKeys.yaml), the enrollment profile's MDM and
 * SCEP payloads (src/protocol/profile.ts) and the Enrollment SSO profile's extensible SSO and certificate
 * payloads (src/protocol/esso.ts, esso-rules.ts CERTIFICATE_PAYLOAD_TYPES). Add a file here when the
 * server starts emitting another payload type. com.apple.extensiblesso(kerberos).yaml describes the same
 * payload type with the ExtensionData of Apple's Kerberos extension; the generic file is the one read.
 */
const PROFILE_TOP_LEVEL = 'mdm/profiles/TopLevel.yaml'
const PROFILE_COMMON = 'mdm/profiles/CommonPayloadKeys.yaml'
const PROFILE_PAYLOADS = [
  'mdm/profiles/com.apple.mdm.yaml',
  'mdm/profiles/com.apple.security.scep.yaml',
  'mdm/profiles/com.apple.extensiblesso.yaml',
  'mdm/profiles/com.apple.security.root.yaml',
  'mdm/profiles/com.apple.security.pkcs1.yaml',
  'mdm/profiles/com.apple.security.pem.yaml',
  'mdm/profiles/com.apple.security.pkcs12.yaml',
]

/**
 * What the schema says about account-driven enrollment only in a key's `content`. Each is quoted: when
 * Apple rewords the text the derivation fails, instead of keeping a rule the schema no longer states.
 */
const PROSE_RULES = [
  {
    file: 'mdm/profiles/com.apple.mdm.yaml',
    key: 'EnrollmentMode',
    quote: 'Required for account-driven enrollment.',
    rule: { accountDrivenPresence: 'required' },
    source: 'accountDrivenSource',
  },
  {
    // The platforms where the key is `n/a` ignore it: a device there drops the key rather than refusing the
    // payload, so profile-schema.ts reports it as a warning, not as a key the platform does not have.
    file: 'mdm/profiles/com.apple.extensiblesso.yaml',
    key: 'TeamIdentifier',
    quote: 'This key is required on macOS and ignored elsewhere.',
    rule: { ignoredWhereUnavailable: true },
    source: 'ignoredSource',
  },
]

function deriveProfiles(schemaDir, stats) {
  const read = (rel) => {
    const doc = load(schemaDir, path.join(schemaDir, rel))
    if (!doc.payload?.payloadtype) throw new Error(`${rel}: no payload.payloadtype`)
    return doc
  }
  const top = read(PROFILE_TOP_LEVEL)
  const typeKey = top.payloadkeys.find((k) => k.key === 'PayloadType')
  // TopLevel.yaml's payloadtype is the file's name; the value a profile carries is the key's one value.
  if (typeKey?.rangelist?.length !== 1) throw new Error(`${PROFILE_TOP_LEVEL}: PayloadType has no single value`)
  const common = read(PROFILE_COMMON)
  const payloads = {}
  for (const rel of PROFILE_PAYLOADS) {
    const doc = read(rel)
    const type = doc.payload.payloadtype
    if (path.basename(rel, '.yaml') !== type) throw new Error(`${rel}: payloadtype ${type}`)
    payloads[type] = profileEntry(rel, doc, stats)
  }
  for (const p of PROSE_RULES) {
    const doc = read(p.file)
    const key = doc.payloadkeys.find((k) => k.key === p.key)
    if (!key?.content?.replace(/\s+/g, ' ').includes(p.quote)) throw new Error(`${p.file}: ${p.key} no longer says "${p.quote}"`)
    const entry = Object.values(payloads).find((e) => e.file === p.file)?.keys[p.key]
    if (!entry) throw new Error(`${p.file}: ${p.key} is not derived`)
    Object.assign(entry, p.rule, { [p.source]: p.quote })
  }
  return {
    configuration: { payloadType: String(typeKey.rangelist[0]), ...profileEntry(PROFILE_TOP_LEVEL, top, stats) },
    common: profileEntry(PROFILE_COMMON, common, stats),
    payloads,
  }
}

function profileEntry(rel, doc, stats) {
  const support = doc.payload.supportedOS ?? {}
  const platforms = {}
  for (const os of ACCOUNT_DRIVEN_OSES) {
    const entry = profilePlatform(os, support, support, rel, stats)
    if (entry.available && support[os].multiple !== undefined) entry.multiple = support[os].multiple
    platforms[os] = entry
  }
  const { keys, anyKeys } = profileKeys(doc.payloadkeys, support, rel, [], stats)
  const entry = { file: rel, title: doc.title, platforms, keys }
  if (anyKeys) entry.anyKeys = anyKeys
  return entry
}

/**
 * One platform of a payload or key: its availability and what user enrollment and account-driven device
 * enrollment make of it, effective (inherited and updated, schema.md) rather than only where it changes.
 */
function profilePlatform(os, parentSupport, own, where, stats) {
  const s = own[os]
  if (!available(parentSupport[os]) || !available(s)) return { available: false }
  const e = effective(s)
  if (!UE_MODES.includes(e.userEnrollment)) throw new Error(`${where}: userenrollment mode ${e.userEnrollment}`)
  if (s.userenrollment?.mode === undefined) count(stats.userEnrollmentDefaulted, os)
  const entry = {
    available: true,
    introduced: s.introduced,
    userEnrollment: e.userEnrollment,
    supervised: e.supervised,
    requiresDEP: e.requiresDEP,
    // A payload or key only for user enrollment (mode required) has no place in a device enrollment.
    accountDrivenDeviceEnrollment: accountDrivenDeviceEnrollment(os, e) && e.userEnrollment !== 'required',
  }
  if (s.deprecated) entry.deprecated = s.deprecated
  if (s.removed) entry.removed = s.removed
  if (s.userenrollment?.behavior) entry.userEnrollmentBehavior = s.userenrollment.behavior
  return entry
}

/** The keys of a payload or dictionary: `ANY` becomes `anyKeys` (the rule for every key not listed). */
function profileKeys(keys, support, rel, trail, stats) {
  const out = {}
  let anyKeys
  for (const key of keys ?? []) {
    if (key.key === 'ANY') {
      anyKeys = profileValue(key, support, rel, [...trail, '*'], stats, 'any')
      continue
    }
    if (Object.hasOwn(out, key.key)) throw new Error(`${rel}: ${[...trail, key.key].join('.')} twice`)
    const own = inherit(support, key.supportedOS)
    const entry = profileValue(key, own, rel, [...trail, key.key], stats)
    const platforms = {}
    for (const os of ACCOUNT_DRIVEN_OSES) platforms[os] = profilePlatform(os, support, own, `${rel} ${key.key}`, stats)
    out[key.key] = { ...entry, platforms }
  }
  return { keys: out, anyKeys }
}

/**
 * Type, presence, allowed values and, for containers, what they contain. `role` is `key` for a payload
 * or dictionary key, `any` for the rule of a dictionary's unlisted keys, `item` for an array's elements
 * (neither of the last two can be missing, so they carry no presence).
 */
function profileValue(key, support, rel, trail, stats, role = 'key') {
  const where = `${rel}: ${trail.join('.')}`
  const type = TYPES[key.type]
  if (!type) throw new Error(`${where} has type ${key.type}`)
  const entry = { type }
  if (role === 'key') {
    if (key.presence === undefined) count(stats.presenceDefaulted, rel)
    entry.presence = key.presence ?? 'optional'
  }
  if (key.rangelist) entry.rangelist = key.rangelist
  if (key.range) entry.range = key.range
  if (key.format !== undefined) {
    new RegExp(key.format) // refuse a pattern JavaScript cannot read rather than skip it later
    entry.format = key.format
  }
  if (key.default !== undefined) entry.default = key.default
  if (key.valuetype ?? key.subtype) entry.valueType = key.valuetype ?? key.subtype
  if (key.repetition && role !== 'item') stats.notDerived.push(`${where}: repetition outside an array`)
  if (!key.subkeys?.length) return entry
  if (type === 'dictionary') {
    const only = key.subkeys.length === 1 ? key.subkeys[0] : undefined
    if (only?.type === '<dictionary>' && only.key === `${key.key}Item` && only.subkeys?.every((k) => k.key === 'ANY')) {
      // TopLevel ConsentText: a placeholder dictionary (as in an <array> container) whose ANY keys are the
      // dictionary's own ("A dictionary that includes: a key that contains the IETF BCP 47 identifier").
      stats.placeholders.push(`${rel}: ${trail.join('.')}`)
      entry.anyKeys = profileValue(only.subkeys[0], support, rel, [...trail, '*'], stats, 'any')
      return entry
    }
    const { keys, anyKeys } = profileKeys(key.subkeys, support, rel, trail, stats)
    entry.keys = keys
    if (anyKeys) entry.anyKeys = anyKeys
  } else if (type === 'array') {
    // schema.md, "<array> container": one item, the type of every element.
    if (key.subkeys.length !== 1) throw new Error(`${where}: an array with ${key.subkeys.length} item shapes`)
    const item = key.subkeys[0]
    if (item.supportedOS) stats.notDerived.push(`${where}: supportedOS of the array item`)
    entry.items = profileValue(item, support, rel, [...trail, '[]'], stats, 'item')
    // The cardinality of the item is the length of the array it is an item of (the SCEP Subject pairs).
    if (item.repetition) entry.repetition = item.repetition
  } else if (role === 'item') {
    // schema.md: a scalar item "may have a subkeys key, and each element of that sequence defines a
    // possible value for the scalar type in the array".
    entry.rangelist = key.subkeys.map((v) => v.key)
  } else {
    throw new Error(`${where}: a ${key.type} with subkeys`)
  }
  return entry
}

// --- PROVENANCE.md ---------------------------------------------------------------------------------

function provenance({ release, date, commands, declarations, profiles, stats, profileStats }) {
  const defaulted = Object.entries(stats.userEnrollmentDefaulted).sort().map(([os, n]) => `${os} ${n}`).join(', ') || 'none'
  const channels = Object.keys(stats.channelDefaulted).sort()
  const onlyTvWatch = Object.keys(stats.userEnrollmentDefaulted).every((os) => os === 'tvOS' || os === 'watchOS')
  const notDerived = stats.notDerived.length ? stats.notDerived.map((n) => `  - ${n}`).join('\n') : '  - (none in this release)'
  const list = (items) => (items.length ? items.join(', ') : 'none')
  const payloadTypes = Object.keys(profiles.payloads).sort()
  const profileFiles = [profiles.configuration.file, profiles.common.file, ...payloadTypes.map((t) => profiles.payloads[t].file)]
  const presenceDefaulted = Object.entries(profileStats.presenceDefaulted).sort().map(([file, n]) => `${file} ${n}`)
  const profileUeDefaulted = Object.entries(profileStats.userEnrollmentDefaulted).sort().map(([os, n]) => `${os} ${n}`)
  const profileNotDerived = profileStats.notDerived.length ? profileStats.notDerived.map((n) => `  - ${n}`).join('\n') : '  - (none in this release)'
  return `# Provenance of the Apple schema tables

\`commands.json\`, \`declarations.json\` and \`profiles.json\` are derived data. Do not edit them: change
\`scripts/derive-apple-schema.mjs\` and regenerate.

- Source: Apple's device-management schema, https://github.com/apple/device-management
  (\`mdm/commands/*.yaml\`, \`mdm/checkin/*.yaml\`, \`declarative/declarations/**\`, and of \`mdm/profiles\`
  the files listed under "Configuration profiles" below, read as \`docs/schema.md\` and \`docs/schema.yaml\`
  define them).
- License: MIT (Copyright Apple Inc.; the schema's \`LICENSE.txt\`).
- Schema release: ${release}. The copy used carries no commit id; the release is the one its README and
  \`docs/errata.md\` name.
- Derived on: ${date}
- Regenerate: \`npm run derive:apple-schema -- [path-to-apple-schema]\` (default \`../shared/apple-schema\`
  beside the repository), i.e. \`node scripts/derive-apple-schema.mjs [path]\`. The output is
  deterministic; the tests in \`test/protocol/command-rules.test.ts\` and
  \`test/protocol/profile-schema.test.ts\` re-derive and compare when the schema is present.
- Contents: ${Object.keys(commands.commands).length} commands, ${Object.keys(commands.checkin).length} check-in messages, ${Object.keys(declarations.declarations).length} declaration types,
  the Configuration and ${payloadTypes.length} profile payload types.

## How the schema is read

- **Availability.** A platform has a command (message, declaration, key) when its \`introduced\` is a version,
  not \`n/a\`. Keys inherit the \`supportedOS\` of what contains them, updated by their own (schema.md);
  nested objects such as \`userenrollment\` and \`sharedipad\` merge one level deep.
- **\`userenrollment.mode\` absent** means \`allowed\`: \`docs/schema.yaml\` says "If this key is not present,
  then the corresponding payload or payload key can be used both with or without user enrollment in
  effect" (and gives \`default: allowed\`). Entries that relied on this default, by platform: ${defaulted}.${onlyTvWatch ? `
  Every command and message that exists on iOS, macOS or visionOS states its mode; only tvOS and watchOS
  (which have no user enrollment) rely on the default.` : ''}
- **Channels.** The schema gives no default for \`devicechannel\`/\`userchannel\`. Absent, the device channel
  is taken as supported and the user channel as not: the user channel exists only on macOS and Shared
  iPad, and Apple marks the commands it carries. macOS entries that relied on a default: ${channels.length ? channels.join(', ') : 'none (every macOS entry states both)'}.
  On iOS the channels of Shared iPad are in \`sharedIPad\`.
- **\`supervised\`, \`requiresdep\`** absent mean false.
- **Key rules** (\`platforms.<os>.keys\`) list only keys more restricted than what contains them:
  \`userEnrollment\` (forbidden, ignored or required), \`supervised\`, \`requiresDEP\`, \`deviceChannel: false\`,
  \`userChannel: false\`, \`sharedIPadRequired\`. Arrays of strings whose values are subkeys (DeviceInformation
  \`Queries\`) become \`Queries[UDID]\`; arrays of dictionary shapes told apart by their \`Item\` string
  (Settings) become \`Settings[Item=Wallpaper]\`. That \`Item\` convention is read from the files, not
  stated in schema.md.
- **Declarations** use \`allowed-enrollments\` (supervised, device, user, local), not \`userenrollment\`:
  \`userEnrollment\` is \`allowed\` when the list contains \`user\`, else \`forbidden\`. Activations, assets and
  management declarations carry no list (\`allowedEnrollments: null\`) and are open to every enrollment.
  Payload keys are the top-level ones with type and presence; \`anyKeys\` marks a payload of free-form keys
  (com.apple.management.properties). Credential documents (\`assets/credentials/*.yaml\`) are not
  declarations and are left out.

## Account-driven device enrollment (ADDE)

The schema has no ADDE flag. \`accountDrivenDeviceEnrollment\` is derived: a command is allowed for ADDE
on a platform when the platform has it (\`introduced\` not \`n/a\`), it does not require DEP/ADE
(\`requiresdep: true\`: an account-driven device never came through ADE), it is not Shared iPad only, and it
does not require supervision (\`supervised: true\`) **on iOS and visionOS**, where ADDE devices are not
supervised. **On macOS ADDE devices are supervised**: "On Mac computers using macOS 11 or later, Device
Enrollment also enforces supervision on the Mac" (Apple Platform Deployment,
https://support.apple.com/guide/deployment/depd1c27dfe6/web), and ADDE needs macOS 14; the schema agrees,
no macOS declaration lists \`device\` in \`allowed-enrollments\`, a Mac's device enrollment counts as
\`supervised\`. tvOS and watchOS have no account-driven enrollment (false). User enrollment is never supervised.

## Configuration profiles (\`profiles.json\`)

Read by \`src/protocol/profile-schema.ts\` (through \`profile-rules.ts\`, the one profile checker). Only the payload types the server emits are derived (\`grep -rn
PayloadType src\`: the enrollment profile of \`src/protocol/profile.ts\`, the Enrollment SSO profile of
\`src/protocol/esso.ts\` with its certificate payloads); add a file to \`PROFILE_PAYLOADS\` in the script
when the server emits another. Files:
${profileFiles.map((f) => `- \`${f}\``).join('\n')}

- **Shape.** \`configuration\` is TopLevel.yaml (\`payloadType\` is the one value of its \`PayloadType\` key,
  \`Configuration\`), \`common\` the keys every payload has (CommonPayloadKeys.yaml), \`payloads\` one entry per
  payload type (its \`payloadtype\`, which must equal the file name). A payload's keys are its own plus
  \`common\`'s. Every key has \`type\`, \`presence\`, and where the schema gives them \`rangelist\`, \`range\`,
  \`format\` (a regular expression, checked to compile in JavaScript), \`default\`, \`valueType\`;
  dictionaries have \`keys\` (and \`anyKeys\`, the rule for unlisted keys, from an \`ANY\` subkey; a dictionary
  without subkeys is not described and takes any key), arrays \`items\` (schema.md, "<array> container").
- **Platforms.** Only iOS, macOS and visionOS, where account-driven enrollment exists; tvOS and watchOS are
  left out. Every payload and key has, per platform, its effective \`supportedOS\` (inherited and updated as
  for commands): \`available\`, \`introduced\`, \`deprecated\`, \`removed\`, \`userEnrollment\`, \`supervised\`,
  \`requiresDEP\`, and the derived \`accountDrivenDeviceEnrollment\` (as for commands, and false where the
  mode is \`required\`: "can only be used if user enrollment is in effect"). Payloads also keep \`multiple\`.
  Entries that relied on the \`userenrollment\` default: ${list(profileUeDefaulted)}.
- **\`presence\` absent** is read as \`optional\` (schema.md lists only the two values, no default). Keys that
  relied on it: ${list(presenceDefaulted)}. Array items and \`ANY\` rules carry no presence: they cannot be
  missing.
- **\`repetition\` on an array's item** (SCEP \`Subject\`: each pair has \`min: 2, max: 2\`) is read as the
  length of that array and stored on the array. A scalar item with \`subkeys\` lists the possible values
  (schema.md) and becomes the item's \`rangelist\`.
- **Placeholder dictionaries.** A dictionary whose only subkey is a dictionary named \`<key>Item\` holding only
  \`ANY\` is read as a dictionary of those \`ANY\` keys, like the placeholder of an array, as its \`content\`
  describes: ${list(profileStats.placeholders)}.
- **Said only in prose**, quoted by the script (the derivation fails if the text changes):
${PROSE_RULES.map((r) => `  - \`${r.file}\` ${r.key}: "${r.quote}" -> ${Object.entries(r.rule).map(([k, v]) => `\`${k}: ${v}\``).join(', ')}.`).join('\n')}
- **Not in the schema.** That \`EnrollmentMode\` \`BYOD\` is user enrollment and \`ADDE\` device enrollment is
  Apple's documentation (PROTOCOL.md section 6), applied by \`profile-rules.ts\`, not derived.
- **Not derived for profiles:** prose constraints other than those quoted (AccessRights "Don't set to '0'.
  Specify '1' if you specify '2'...", which \`profile-rules.ts\` checks for device enrollment; \`URLs\`/\`Hosts\` required by extensible SSO \`Type\`, which
  \`esso-rules.ts\` checks; SubjectAltName values that may be arrays; the keys that "must not change" on an
  update); \`allowmanualinstall\`, \`userapprovedmdm\`, the channels and \`sharedipad\` (an account-driven
  enrollment installs its profiles over MDM, never Shared iPad); \`com.apple.extensiblesso(kerberos).yaml\`
  (the same payload type, with the Kerberos extension's ExtensionData; the generic file leaves ExtensionData
  free-form). Structures the walker could not express:
${profileNotDerived}

## Not derived

- \`accessrights\` is copied, not checked (it depends on the enrollment profile's AccessRights).
- Per-key \`introduced\` for commands (a key newer than the target's OS) is not recorded: devices ignore
  keys they do not know.
- \`mdm/profiles\` other than the files above, \`mdm/errors\`, \`declarative/status\` and \`declarative/protocol\`
  are not read here.
- Structures the walker could not express:
${notDerived}
`
}

main(process.argv.slice(2))
