/**
 * A small, bounded ASN.1 BER reader and DER writer (ITU-T X.690). Apple devices send CMS in BER with
 * indefinite lengths; hostile senders send deep nesting, lengths past the end and huge OID arcs. The
 * reader checks every length against the buffer, limits depth and node count before anything recursive
 * sees the input, and keeps byte offsets so callers can take exact slices (signed attributes as the
 * signer encoded them, certificates as DER for node:crypto).
 */

export class Asn1Error extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'Asn1Error'
  }
}

export const TagClass = { universal: 0, application: 1, context: 2, private: 3 } as const

export const Tag = {
  BOOLEAN: 1,
  INTEGER: 2,
  BIT_STRING: 3,
  OCTET_STRING: 4,
  NULL: 5,
  OID: 6,
  UTF8_STRING: 12,
  SEQUENCE: 16,
  SET: 17,
  PRINTABLE_STRING: 19,
  T61_STRING: 20,
  IA5_STRING: 22,
  UTC_TIME: 23,
  GENERALIZED_TIME: 24,
  BMP_STRING: 30,
} as const

export interface Asn1Node {
  readonly tagClass: number
  readonly constructed: boolean
  readonly tagNumber: number
  /** Offset of the first identifier byte in `src`. */
  readonly start: number
  /** Offset of the first content byte. */
  readonly contentStart: number
  /** Offset one past the last content byte (before the end-of-contents octets when indefinite). */
  readonly contentEnd: number
  /** Offset one past the whole element, including end-of-contents octets. */
  readonly end: number
  readonly indefinite: boolean
  readonly children: Asn1Node[]
  readonly src: Uint8Array
}

export interface ParseLimits {
  /** Deepest nesting accepted; CMS with certificates needs about 12. */
  maxDepth?: number
  /** Most elements accepted in one parse. */
  maxNodes?: number
}

const DEFAULT_LIMITS: Required<ParseLimits> = { maxDepth: 40, maxNodes: 200_000 }

/**
 * Parses exactly one element that must fill `src` (trailing bytes are an error). Constructed elements are
 * parsed down to their leaves.
 */
export function parseDer(src: Uint8Array, limits: ParseLimits = {}): Asn1Node {
  const lim = { ...DEFAULT_LIMITS, ...limits }
  const state = { nodes: 0 }
  const node = readElement(src, 0, src.length, 0, lim, state)
  if (node.end !== src.length) throw new Asn1Error(`${src.length - node.end} trailing bytes after the ASN.1 element`)
  return node
}

function readElement(src: Uint8Array, pos: number, limit: number, depth: number, lim: Required<ParseLimits>, state: { nodes: number }): Asn1Node {
  if (depth > lim.maxDepth) throw new Asn1Error(`ASN.1 nesting deeper than ${lim.maxDepth}`)
  if (++state.nodes > lim.maxNodes) throw new Asn1Error(`more than ${lim.maxNodes} ASN.1 elements`)
  const start = pos
  if (pos >= limit) throw new Asn1Error('truncated ASN.1: missing identifier')
  const id = src[pos++]!
  const tagClass = id >> 6
  const constructed = (id & 0x20) !== 0
  let tagNumber = id & 0x1f
  if (tagNumber === 0x1f) {
    tagNumber = 0
    for (let i = 0; ; i++) {
      if (pos >= limit) throw new Asn1Error('truncated ASN.1: tag number')
      if (i >= 4) throw new Asn1Error('ASN.1 tag number too large')
      const b = src[pos++]!
      tagNumber = tagNumber * 128 + (b & 0x7f)
      if ((b & 0x80) === 0) break
    }
  }
  if (pos >= limit) throw new Asn1Error('truncated ASN.1: missing length')
  const first = src[pos++]!
  let length = -1
  if (first < 0x80) {
    length = first
  } else if (first === 0x80) {
    if (!constructed) throw new Asn1Error('indefinite length on a primitive ASN.1 element')
  } else {
    const n = first & 0x7f
    if (n > 4) throw new Asn1Error('ASN.1 length field too long')
    length = 0
    for (let i = 0; i < n; i++) {
      if (pos >= limit) throw new Asn1Error('truncated ASN.1: length')
      length = length * 256 + src[pos++]!
    }
  }
  const contentStart = pos
  const children: Asn1Node[] = []
  if (length >= 0) {
    const contentEnd = contentStart + length
    if (contentEnd > limit) throw new Asn1Error('ASN.1 length runs past the end of the data')
    if (constructed) {
      let p = contentStart
      while (p < contentEnd) {
        const child = readElement(src, p, contentEnd, depth + 1, lim, state)
        children.push(child)
        p = child.end
      }
    }
    return { tagClass, constructed, tagNumber, start, contentStart, contentEnd, end: contentEnd, indefinite: false, children, src }
  }
  // Indefinite length: children until the end-of-contents octets 00 00.
  let p = contentStart
  for (;;) {
    if (p + 2 > limit) throw new Asn1Error('truncated ASN.1: missing end-of-contents')
    if (src[p] === 0 && src[p + 1] === 0) break
    const child = readElement(src, p, limit, depth + 1, lim, state)
    children.push(child)
    p = child.end
  }
  return { tagClass, constructed, tagNumber, start, contentStart, contentEnd: p, end: p + 2, indefinite: true, children, src }
}

/** The content octets of a primitive element. */
export function contentOf(node: Asn1Node): Uint8Array {
  return node.src.subarray(node.contentStart, node.contentEnd)
}

/** The whole element as it appears in the source (identifier, length, content). */
export function rawOf(node: Asn1Node): Uint8Array {
  return node.src.subarray(node.start, node.end)
}

export function isUniversal(node: Asn1Node, tagNumber: number): boolean {
  return node.tagClass === TagClass.universal && node.tagNumber === tagNumber
}

export function isContext(node: Asn1Node, tagNumber: number): boolean {
  return node.tagClass === TagClass.context && node.tagNumber === tagNumber
}

/** Throws unless `node` is the universal type `tagNumber`; returns it for chaining. */
export function expectUniversal(node: Asn1Node | undefined, tagNumber: number, what: string): Asn1Node {
  if (!node) throw new Asn1Error(`${what}: missing`)
  if (!isUniversal(node, tagNumber)) throw new Asn1Error(`${what}: unexpected ASN.1 tag ${node.tagClass}/${node.tagNumber}`)
  return node
}

/** The child at `index`, which must exist. */
export function child(node: Asn1Node, index: number, what: string): Asn1Node {
  const c = node.children[index]
  if (!c) throw new Asn1Error(`${what}: missing element ${index}`)
  return c
}

/**
 * The value of an OCTET STRING (or any string type), joining the segments of a constructed (BER) one.
 */
export function octetsOf(node: Asn1Node, depth = 0): Buffer {
  if (!node.constructed) return Buffer.from(contentOf(node))
  if (depth > 4) throw new Asn1Error('constructed string nested too deeply')
  return Buffer.concat(node.children.map((c) => octetsOf(c, depth + 1)))
}

/** Dotted-decimal OID; arcs above 2^53 are refused (no real OID has them). */
export function oidOf(node: Asn1Node): string {
  if (!isUniversal(node, Tag.OID)) throw new Asn1Error('expected an OBJECT IDENTIFIER')
  const c = contentOf(node)
  if (c.length === 0 || c.length > 64) throw new Asn1Error('OBJECT IDENTIFIER of unreasonable length')
  const arcs: number[] = []
  let v = 0
  for (let i = 0; i < c.length; i++) {
    const b = c[i]!
    if (v === 0 && b === 0x80) throw new Asn1Error('OBJECT IDENTIFIER arc with a leading zero byte')
    v = v * 128 + (b & 0x7f)
    if (v > Number.MAX_SAFE_INTEGER) throw new Asn1Error('OBJECT IDENTIFIER arc too large')
    if ((b & 0x80) === 0) {
      arcs.push(v)
      v = 0
    } else if (i === c.length - 1) {
      throw new Asn1Error('truncated OBJECT IDENTIFIER')
    }
  }
  const first = arcs.shift()!
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80]
  return [...head, ...arcs].join('.')
}

/** An INTEGER as an unsigned hex string without leading zero bytes (serial numbers). */
export function integerHexOf(node: Asn1Node): string {
  if (!isUniversal(node, Tag.INTEGER)) throw new Asn1Error('expected an INTEGER')
  const c = contentOf(node)
  if (c.length === 0) throw new Asn1Error('empty INTEGER')
  let i = 0
  while (i < c.length - 1 && c[i] === 0) i++
  return Buffer.from(c.subarray(i)).toString('hex')
}

/** A small INTEGER as a number. */
export function integerOf(node: Asn1Node): number {
  const c = contentOf(expectUniversal(node, Tag.INTEGER, 'INTEGER'))
  if (c.length === 0 || c.length > 6) throw new Asn1Error('INTEGER out of range')
  let v = c[0]! & 0x80 ? -1 : 0
  for (const b of c) v = v * 256 + b
  return v
}

/** Text of a string element (UTF8String, PrintableString, IA5String, ...). */
export function stringOf(node: Asn1Node): string {
  if (node.tagClass !== TagClass.universal) throw new Asn1Error('expected a string')
  const bytes = octetsOf(node)
  if (node.tagNumber === Tag.BMP_STRING) return Buffer.from(bytes).swap16().toString('utf16le')
  return bytes.toString(node.tagNumber === Tag.UTF8_STRING ? 'utf8' : 'latin1')
}

/**
 * Re-encodes an element with definite lengths (DER length rules). Content and order are kept, so the
 * result equals the input when the input already was DER. Used to turn BER-encoded signed attributes
 * into the DER the signature was computed over.
 */
export function toDefiniteLength(node: Asn1Node): Buffer {
  if (!node.constructed) return Buffer.from(rawOf(node))
  if (!node.indefinite && node.children.every((c) => !c.indefinite && !hasIndefinite(c))) return Buffer.from(rawOf(node))
  const content = Buffer.concat(node.children.map(toDefiniteLength))
  return Buffer.concat([identifierOf(node), encodeLength(content.length), content])
}

function hasIndefinite(node: Asn1Node): boolean {
  return node.indefinite || node.children.some(hasIndefinite)
}

function identifierOf(node: Asn1Node): Buffer {
  const first = node.src[node.start]!
  if ((first & 0x1f) !== 0x1f) return Buffer.from([first])
  let p = node.start + 1
  while (node.src[p]! & 0x80) p++
  return Buffer.from(node.src.subarray(node.start, p + 1))
}

// ---------------------------------------------------------------------------------------------------
// DER writer

export function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let v = length; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** Identifier octet for a low tag number. */
function identifier(tagClass: number, constructed: boolean, tagNumber: number): number {
  if (tagNumber >= 31) throw new Error('high tag numbers are not needed by this writer')
  return (tagClass << 6) | (constructed ? 0x20 : 0) | tagNumber
}

export function tlv(tagClass: number, constructed: boolean, tagNumber: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([identifier(tagClass, constructed, tagNumber)]), encodeLength(content.length), content])
}

export const der = {
  sequence: (...items: Uint8Array[]) => tlv(0, true, Tag.SEQUENCE, Buffer.concat(items)),
  /** A SET in the order given (for SET types whose order is fixed by the caller). */
  set: (...items: Uint8Array[]) => tlv(0, true, Tag.SET, Buffer.concat(items)),
  /** A DER SET OF: elements sorted by their encodings (X.690 11.6). */
  setOf: (items: Uint8Array[]) => tlv(0, true, Tag.SET, Buffer.concat([...items].sort((a, b) => Buffer.compare(a, b)))),
  octetString: (data: Uint8Array) => tlv(0, false, Tag.OCTET_STRING, data),
  null: () => Buffer.from([0x05, 0x00]),
  boolean: (v: boolean) => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]),
  utf8: (s: string) => tlv(0, false, Tag.UTF8_STRING, Buffer.from(s, 'utf8')),
  printable: (s: string) => tlv(0, false, Tag.PRINTABLE_STRING, Buffer.from(s, 'latin1')),
  /** An INTEGER from a non-negative number, bigint, or unsigned big-endian hex string. */
  integer(value: number | bigint | string): Buffer {
    let hex = typeof value === 'string' ? value.replace(/^0+(?=.)/, '') : BigInt(value).toString(16)
    if (hex.length % 2) hex = `0${hex}`
    let bytes = Buffer.from(hex, 'hex')
    if (bytes.length === 0) bytes = Buffer.from([0])
    if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes])
    return tlv(0, false, Tag.INTEGER, bytes)
  },
  bitString: (data: Uint8Array, unusedBits = 0) => tlv(0, false, Tag.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), data])),
  oid(dotted: string): Buffer {
    const arcs = dotted.split('.').map((a) => {
      if (!/^\d+$/.test(a)) throw new Error(`bad OID ${dotted}`)
      return BigInt(a)
    })
    if (arcs.length < 2) throw new Error(`bad OID ${dotted}`)
    const out: number[] = []
    const push = (v: bigint) => {
      const stack = [Number(v & 0x7fn)]
      for (v >>= 7n; v > 0n; v >>= 7n) stack.unshift(Number(v & 0x7fn) | 0x80)
      out.push(...stack)
    }
    push(arcs[0]! * 40n + arcs[1]!)
    for (const a of arcs.slice(2)) push(a)
    return tlv(0, false, Tag.OID, Buffer.from(out))
  },
  utcTime(date: Date): Buffer {
    const s = date.toISOString().replace(/[-:T]/g, '').slice(2, 14)
    return tlv(0, false, Tag.UTC_TIME, Buffer.from(`${s}Z`, 'latin1'))
  },
  /** [n] EXPLICIT: a constructed context tag around one encoded element. */
  explicit: (n: number, inner: Uint8Array) => tlv(TagClass.context, true, n, inner),
  /** [n] IMPLICIT with the given content (constructed when the replaced type was). */
  implicit: (n: number, constructed: boolean, content: Uint8Array) => tlv(TagClass.context, constructed, n, content),
}
