/**
 * Property lists as Apple devices send them: XML only, size-limited, strictly parsed.
 *
 * The `plist` library is used to build plists. Parsing uses its XML parser (@xmldom/xmldom) with every
 * XML error fatal, and our own strict walker, because `plist.parse` auto-detects binary and OpenStep
 * formats (its binary parser has no depth limit), keeps the last of duplicate keys, reads "12abc" as 12,
 * turns unknown elements into undefined and logs parse errors to stderr (SECURITY.md, "plist 5.x").
 *
 * Before the XML parser runs, anything not starting with `<?xml` or `<plist` is refused, then `scanXml`
 * (xml-limits.ts) reads the text once, in linear time, and refuses: any DOCTYPE other than Apple's
 * public one, entity declarations and processing instructions; nesting deeper than `maxDepth`; more
 * elements, attributes or namespace declarations than PLIST_XML_LIMITS allows (shapes on which the XML
 * parser is slow or memory-hungry). The walker refuses control characters, duplicate keys,
 * `__proto__`/`constructor`/`prototype` keys, integers that do not fit a JavaScript number, malformed
 * data/date/real values and unknown elements.
 */
import { DOMParser, type Element, type Node as XmlNode } from '@xmldom/xmldom'
import { build as buildXml, type PlistValue } from 'plist'
import { BadRequestError } from '../errors.js'
import { elementDepthExceeds, parserMessage, scanXml, XML_ILLEGAL_CHARACTERS, XmlScanError, type XmlLimits } from './xml-limits.js'

export type { PlistValue }
export type PlistDict = { [key: string]: PlistValue }

export class PlistError extends BadRequestError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'invalid_plist', ...options })
  }
}

export interface PlistLimits {
  maxBytes?: number
  maxDepth?: number
}

const DEFAULTS = { maxBytes: 1024 * 1024, maxDepth: 32 }

/**
 * Bounds on a plist's XML besides size and depth. A 1 MiB body holds at most ~260k elements (`<a/>`);
 * plists devices send are ~11 bytes per element (InstalledApplicationList, ProfileList: thousands of
 * dicts), so ~95k elements per MiB; 200k leaves twice that. The plist DTD has one attribute (`version`
 * on <plist>) and no namespaces: the attribute and namespace bounds are far above anything a device
 * sends and keep the parser off the shapes where it is slow (namespace maps grow per nested
 * declaration; Attr nodes cost about as much memory as elements).
 */
export const PLIST_XML_LIMITS: Omit<XmlLimits, 'maxDepth'> = {
  maxElements: 200_000,
  maxAttributesPerElement: 16,
  maxAttributes: 10_000,
  maxNamespaceDeclarationsPerElement: 4,
  maxNamespaceDeclarations: 16,
}

// Matched whole from `<!DOCTYPE` by scanXml (no anchors). XML white space only.
const APPLE_DOCTYPE = /<!DOCTYPE[ \t\r\n]+plist[ \t\r\n]+PUBLIC[ \t\r\n]+"-\/\/Apple\/\/DTD PLIST 1\.0\/\/EN"[ \t\r\n]+"http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd"[ \t\r\n]*>/
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype'])

/** Checks the raw XML text; throws PlistError for anything the XML parser must not see. */
function prescan(xml: string, maxDepth: number): void {
  const body = xml.replace(/^\uFEFF?\s*/, '')
  if (!body.startsWith('<?xml') && !body.startsWith('<plist')) {
    throw new PlistError(body.startsWith('bplist') ? 'binary plists are not accepted' : 'body is not an XML property list')
  }
  try {
    // <plist> itself is one level; maxDepth counts the dict/array levels below it plus the leaf.
    scanXml(xml, { ...PLIST_XML_LIMITS, maxDepth: maxDepth + 1 }, { comments: true, doctype: APPLE_DOCTYPE })
  } catch (err) {
    if (!(err instanceof XmlScanError)) throw err
    if (err.reason === 'depth') throw new PlistError(`plist nested deeper than ${maxDepth}`)
    if (err.reason === 'doctype') throw new PlistError('DOCTYPE declarations other than the Apple plist DOCTYPE are not accepted')
    throw new PlistError(err.message)
  }
}

/** Parses an XML plist from request bytes. Throws PlistError (a 400) on anything unacceptable. */
export function parsePlist(input: Uint8Array | string, limits: PlistLimits = {}): PlistValue {
  const { maxBytes, maxDepth } = { ...DEFAULTS, ...limits }
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length
  if (size > maxBytes) throw new PlistError(`plist larger than ${maxBytes} bytes`)
  if (size === 0) throw new PlistError('empty body')
  let xml: string
  if (typeof input === 'string') {
    xml = input
  } else {
    try {
      xml = new TextDecoder('utf-8', { fatal: true }).decode(input)
    } catch {
      throw new PlistError('plist is not valid UTF-8')
    }
  }
  const root = readSimplePlist(xml, maxDepth) ?? readXmlPlist(xml, maxDepth)
  const items = elementChildren(root)
  if (items.length !== 1) throw new PlistError('<plist> must contain exactly one value')
  return readValue(items[0]!)
}

/** `parsePlist` through the full path only (scanXml and the XML parser): the fast path is tested against it. */
export function parsePlistWithXmlParser(xml: string, limits: PlistLimits = {}): PlistValue {
  const items = elementChildren(readXmlPlist(xml, limits.maxDepth ?? DEFAULTS.maxDepth))
  if (items.length !== 1) throw new PlistError('<plist> must contain exactly one value')
  return readValue(items[0]!)
}

/** Whether `xml` takes the fast path (tests: the plists devices send do). */
export function takesFastPath(xml: string, maxDepth = DEFAULTS.maxDepth): boolean {
  return readSimplePlist(xml, maxDepth) !== undefined
}

/** The full path: scanXml's bounds, then the XML parser with every error fatal; the <plist> element. */
function readXmlPlist(xml: string, maxDepth: number): Element {
  prescan(xml, maxDepth)
  let root: Element | null
  try {
    const doc = new DOMParser({
      onError: (level: string, message: string) => {
        throw new PlistError(`malformed XML (${level}): ${parserMessage(message)}`)
      },
    }).parseFromString(xml, 'text/xml')
    root = doc.documentElement
  } catch (err) {
    if (err instanceof PlistError) throw err
    const inner = (err as { cause?: unknown }).cause
    if (inner instanceof PlistError) throw inner
    throw new PlistError(`malformed XML: ${parserMessage((err as Error).message)}`, { cause: err })
  }
  if (!root || root.nodeName !== 'plist') throw new PlistError('the root element is not <plist>')
  // Already refused by the scan; kept as a cheap check on the tree the parser built (see xml-limits.ts).
  if (elementDepthExceeds(root, maxDepth + 1)) throw new PlistError(`plist nested deeper than ${maxDepth}`)
  return root
}

/**
 * The fast path for the plists devices send on every check-in: the XML declaration, Apple's DOCTYPE,
 * `<plist version="1.0">` and plist elements without attributes, text with the five predefined entities
 * only, no comments, CDATA, character references or carriage returns. Such a document is read into the
 * few DOM-like nodes `readValue` walks (the same walker, so the same rules and values as the XML parser's
 * tree); anything else, or anything past the depth or element bounds, returns undefined and takes the
 * full path (scanXml, the XML parser), which decides. A differential test holds the two to the same
 * answers (test/protocol/plist-fast-path.test.ts).
 */
const SIMPLE_PROLOG = /^(?:<\?xml version="1\.0" encoding="UTF-8"\?>[ \t\n]*)?(?:<!DOCTYPE plist PUBLIC "-\/\/Apple\/\/DTD PLIST 1\.0\/\/EN" "http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd">[ \t\n]*)?<plist(?: version="1\.0")?>/
const SIMPLE_NAMES = new Set(['dict', 'array', 'key', 'string', 'integer', 'real', 'date', 'data', 'true', 'false'])
const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&amp;': '&', '&quot;': '"', '&apos;': "'" }

interface SimpleNode {
  nodeType: number
  nodeName: string
  nodeValue: string | null
  firstChild: SimpleNode | null
  nextSibling: SimpleNode | null
}

function readSimplePlist(xml: string, maxDepth: number): Element | undefined {
  if (xml.includes('\r') || xml.includes(']]>') || XML_ILLEGAL_CHARACTERS.test(xml)) return undefined
  const prolog = SIMPLE_PROLOG.exec(xml)
  if (!prolog) return undefined
  const root: SimpleNode = { nodeType: ELEMENT_NODE, nodeName: 'plist', nodeValue: null, firstChild: null, nextSibling: null }
  const stack: { node: SimpleNode; last: SimpleNode | null }[] = [{ node: root, last: null }]
  const append = (child: SimpleNode) => {
    const top = stack[stack.length - 1]!
    if (top.last) top.last.nextSibling = child
    else top.node.firstChild = child
    top.last = child
  }
  let elements = 1
  let i = prolog[0].length
  while (i < xml.length) {
    const lt = xml.indexOf('<', i)
    if (lt < 0) return undefined
    if (lt > i) {
      const raw = xml.slice(i, lt)
      let text = raw
      if (raw.includes('&')) {
        text = raw.replace(/&[a-z]*;?/g, (e) => ENTITIES[e] ?? '\u0000')
        if (text.includes('\u0000')) return undefined
      }
      append({ nodeType: TEXT_NODE, nodeName: '#text', nodeValue: text, firstChild: null, nextSibling: null })
    }
    const gt = xml.indexOf('>', lt)
    if (gt < 0) return undefined
    const tag = xml.slice(lt + 1, gt)
    i = gt + 1
    if (tag.startsWith('/')) {
      const name = tag.slice(1)
      const top = stack.pop()!
      if (top.node.nodeName !== name) return undefined
      if (stack.length === 0) return /^[ \t\n]*$/.test(xml.slice(i)) ? (root as unknown as Element) : undefined
      continue
    }
    const empty = tag.endsWith('/')
    const name = empty ? tag.slice(0, -1) : tag
    if (!SIMPLE_NAMES.has(name)) return undefined
    if (++elements > PLIST_XML_LIMITS.maxElements) return undefined
    // <plist> is one level; the bound is maxDepth + 1 levels in all, empty elements included.
    if (stack.length + 1 > maxDepth + 1) return undefined
    const node: SimpleNode = { nodeType: ELEMENT_NODE, nodeName: name, nodeValue: null, firstChild: null, nextSibling: null }
    append(node)
    if (!empty) stack.push({ node, last: null })
  }
  return undefined
}

const ELEMENT_NODE = 1
const TEXT_NODE = 3
const CDATA_NODE = 4
const COMMENT_NODE = 8

/** Child elements; text between them must be white space. */
function elementChildren(node: Element): Element[] {
  const out: Element[] = []
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === ELEMENT_NODE) out.push(c as Element)
    else if (c.nodeType === TEXT_NODE && !/^\s*$/.test(c.nodeValue ?? '')) throw new PlistError(`unexpected text inside <${node.nodeName}>`)
    else if (c.nodeType === CDATA_NODE) throw new PlistError(`unexpected CDATA inside <${node.nodeName}>`)
  }
  return out
}

/** Text content of a leaf element; child elements are an error. */
function textOf(node: Element): string {
  let text = ''
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === TEXT_NODE || c.nodeType === CDATA_NODE) text += c.nodeValue ?? ''
    else if (c.nodeType !== COMMENT_NODE) throw new PlistError(`unexpected element inside <${node.nodeName}>`)
  }
  // Character references such as &#0; reach here decoded; XML forbids them, and so does Postgres text.
  if (XML_ILLEGAL_CHARACTERS.test(text)) throw new PlistError(`<${node.nodeName}> contains a control character`)
  return text
}

const INTEGER = /^\s*[+-]?\d+\s*$/
const REAL = /^\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?|nan)\s*$/i
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

function readValue(node: Element): PlistValue {
  switch (node.nodeName) {
    case 'dict': {
      const out: PlistDict = {}
      const items = elementChildren(node)
      if (items.length % 2) throw new PlistError('<dict> has a key without a value')
      for (let i = 0; i < items.length; i += 2) {
        if (items[i]!.nodeName !== 'key') throw new PlistError(`<dict> expected <key>, found <${items[i]!.nodeName}>`)
        const key = textOf(items[i]!)
        if (FORBIDDEN_KEYS.has(key)) throw new PlistError(`key "${key}" is not allowed`)
        if (Object.prototype.hasOwnProperty.call(out, key)) throw new PlistError(`duplicate key "${key}"`)
        if (items[i + 1]!.nodeName === 'key') throw new PlistError(`<dict> key "${key}" has no value`)
        out[key] = readValue(items[i + 1]!)
      }
      return out
    }
    case 'array':
      return elementChildren(node).map(readValue)
    case 'string':
      return textOf(node)
    case 'integer': {
      const text = textOf(node)
      if (!INTEGER.test(text)) throw new PlistError('malformed <integer>')
      const n = Number(text.trim())
      if (!Number.isSafeInteger(n)) throw new PlistError('integer out of range')
      return n
    }
    case 'real': {
      const text = textOf(node)
      if (!REAL.test(text)) throw new PlistError('malformed <real>')
      const t = text.trim().toLowerCase()
      return t === 'nan' ? Number.NaN : /inf/.test(t) ? (t.startsWith('-') ? -Infinity : Infinity) : Number(t)
    }
    case 'data': {
      const text = textOf(node).replace(/\s+/g, '')
      if (!BASE64.test(text) || text.length % 4 === 1) throw new PlistError('malformed <data>')
      return new Uint8Array(Buffer.from(text, 'base64'))
    }
    case 'date': {
      const text = textOf(node).trim()
      const date = new Date(text)
      if (!DATE.test(text) || Number.isNaN(date.getTime())) throw new PlistError('malformed <date>')
      return date
    }
    case 'true':
    case 'false':
      if (elementChildren(node).length || textOf(node).trim()) throw new PlistError(`<${node.nodeName}> must be empty`)
      return node.nodeName === 'true'
    default:
      throw new PlistError(`unknown plist element <${node.nodeName}>`)
  }
}

/** Parses a plist whose top level must be a dict. */
export function parsePlistDict(input: Uint8Array | string, limits: PlistLimits = {}): PlistDict {
  const value = parsePlist(input, limits)
  if (!isDict(value)) throw new PlistError('plist top level is not a dict')
  return value
}

export function isDict(value: PlistValue | undefined): value is PlistDict {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date) && !(value instanceof Uint8Array)
}

/** Serialises a value as an Apple XML plist (with the standard XML declaration and DOCTYPE). */
export function buildPlist(value: PlistValue): string {
  return buildXml(value)
}
