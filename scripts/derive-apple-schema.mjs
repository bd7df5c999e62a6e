// Derives the tables in src/protocol/apple/ from Apple's device-management schema (MIT),
// github.com/apple/device-management: which MDM commands and check-in messages exist on which platform,
// how user enrollment, channels, supervision and DEP restrict them (command and key by key), and every
// declaration type with its payload keys. src/protocol/command-rules.ts reads the result.
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

  mkdirSync(outDir, { recursive: true })
  const files = { 'commands.json': json(commands), 'declarations.json': json(declarations) }
  const unchanged = Object.entries(files).every(([name, text]) => readIfExists(path.join(outDir, name)) === text)
  const previousDate = /^Derived on: (\d{4}-\d{2}-\d{2})$/m.exec(readIfExists(path.join(outDir, 'PROVENANCE.md')) ?? '')?.[1]
  const date = unchanged && previousDate ? previousDate : new Date().toISOString().slice(0, 10)
  files['PROVENANCE.md'] = provenance({ release, date, commands, declarations, stats })
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(outDir, name), text)
  console.log(`${Object.keys(commands.commands).length} commands, ${Object.keys(commands.checkin).length} check-in messages, ${Object.keys(declarations.declarations).length} declaration types -> ${path.relative(process.cwd(), outDir) || '.'}`)
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

// --- PROVENANCE.md ---------------------------------------------------------------------------------

function provenance({ release, date, commands, declarations, stats }) {
  const defaulted = Object.entries(stats.userEnrollmentDefaulted).sort().map(([os, n]) => `${os} ${n}`).join(', ') || 'none'
  const channels = Object.keys(stats.channelDefaulted).sort()
  const onlyTvWatch = Object.keys(stats.userEnrollmentDefaulted).every((os) => os === 'tvOS' || os === 'watchOS')
  const notDerived = stats.notDerived.length ? stats.notDerived.map((n) => `  - ${n}`).join('\n') : '  - (none in this release)'
  return `# Provenance of the Apple schema tables

\`commands.json\` and \`declarations.json\` are derived data. Do not edit them: change
\`scripts/derive-apple-schema.mjs\` and regenerate.

- Source: Apple's device-management schema, https://github.com/apple/device-management
  (\`mdm/commands/*.yaml\`, \`mdm/checkin/*.yaml\`, \`declarative/declarations/**\`, read as \`docs/schema.md\`
  and \`docs/schema.yaml\` define them).
- License: MIT (Copyright Apple Inc.; the schema's \`LICENSE.txt\`).
- Schema release: ${release}. The copy used carries no commit id; the release is the one its README and
  \`docs/errata.md\` name.
- Derived on: ${date}
- Regenerate: \`npm run derive:apple-schema -- [path-to-apple-schema]\` (default \`../shared/apple-schema\`
  beside the repository), i.e. \`node scripts/derive-apple-schema.mjs [path]\`. The output is
  deterministic; the test in \`test/protocol/command-rules.test.ts\` re-derives and compares when the schema
  is present.
- Contents: ${Object.keys(commands.commands).length} commands, ${Object.keys(commands.checkin).length} check-in messages, ${Object.keys(declarations.declarations).length} declaration types.

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

## Not derived

- \`accessrights\` is copied, not checked (it depends on the enrollment profile's AccessRights).
- Per-key \`introduced\` for commands (a key newer than the target's OS) is not recorded: devices ignore
  keys they do not know.
- \`mdm/profiles\`, \`mdm/errors\`, \`declarative/status\` and \`declarative/protocol\` are not read here.
- Structures the walker could not express:
${notDerived}
`
}

main(process.argv.slice(2))
