/**
 * Limits on XML (plists, SAML), enforced before the XML parser runs. Pure: no I/O.
 *
 * @xmldom/xmldom is not linear on every shape: each element that declares a namespace extends a
 * prototype chain of namespace maps that every later lookup below it walks, so nesting with a new
 * prefix per level (`<p0:a xmlns:p0="u"><p1:a xmlns:p1="u">...`) costs quadratic time (a 1 MiB body
 * took 24-35 s, blocking the event loop), and a check on the finished DOM comes too late.
 * `scanXml` is a single pass over the text, in time linear in its length, that tokenizes just enough
 * to follow the element structure the parser will build (quoted attribute values, comments, CDATA,
 * the XML declaration, an allowed DOCTYPE) and refuses, at the first excess, too deep nesting, too
 * many elements, attributes or namespace declarations. It is strict: anything it cannot read as
 * well-formed markup is refused, so it cannot be made to disagree with the parser about the structure
 * (`<a b="/>">`, `<!-- <a> -->` and `<![CDATA[<a>]]>` hide nothing from it).
 */
import type { Node as XmlNode } from '@xmldom/xmldom'

export interface XmlLimits {
  /** Deepest element nesting; the root element is depth 1. */
  maxDepth: number
  /** Elements in the whole document. */
  maxElements: number
  maxAttributesPerElement: number
  /** Attributes in the whole document, namespace declarations included. */
  maxAttributes: number
  /** `xmlns` and `xmlns:*` attributes on one element. */
  maxNamespaceDeclarationsPerElement: number
  /** `xmlns` and `xmlns:*` attributes in the whole document. */
  maxNamespaceDeclarations: number
}

export interface XmlMarkupPolicy {
  /** Whether comments are accepted (SAML refuses them: see identity/saml/xml.ts). */
  comments: boolean
  /** The one DOCTYPE accepted before the root element, matched whole from `<!DOCTYPE`; none when absent. */
  doctype?: RegExp
}

/** What the scan refused: `limit` for an exceeded XmlLimits bound, the others for markup. */
export type XmlScanRefusal = 'depth' | 'limit' | 'doctype' | 'comment' | 'declaration' | 'malformed'

/** A refusal. The message names the rule broken, never the input. */
export class XmlScanError extends Error {
  override name = 'XmlScanError'
  constructor(
    readonly reason: XmlScanRefusal,
    message: string,
  ) {
    super(message)
  }
}

/** What the scan counted, for tests and logs. */
export interface XmlShape {
  depth: number
  elements: number
  attributes: number
  namespaceDeclarations: number
}

// XML 1.0 Name (fifth edition) without the astral planes, a little narrower than the parser's; a name
// outside it is refused rather than guessed at. ASCII goes through a table (names are nearly always
// ASCII and this runs once per tag), anything else through these one-character tests.
const NAME_START_CHAR = /[:A-Z_a-z\xC0-\xD6\xD8-\xF6\xF8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]/
const NAME_CHAR = /[-.0-9:A-Z_a-z\xB7\xC0-\xD6\xD8-\xF6\xF8-\u037D\u037F-\u1FFF\u200C\u200D\u203F\u2040\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD]/
const START = 1
const PART = 2
const ASCII_NAME = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  ASCII_NAME[c] = NAME_START_CHAR.test(ch) ? START | PART : NAME_CHAR.test(ch) ? PART : 0
}

/** The end of the XML Name starting at `p`, or `p` when there is none. */
function nameEnd(xml: string, p: number): number {
  const first = xml.charCodeAt(p) // NaN past the end: no name
  if (first < 128 ? !(ASCII_NAME[first]! & START) : !(first >= 128 && NAME_START_CHAR.test(xml[p]!))) return p
  let q = p + 1
  for (;;) {
    const c = xml.charCodeAt(q)
    if (c < 128 ? !(ASCII_NAME[c]! & PART) : !(c >= 128 && NAME_CHAR.test(xml[q]!))) return q
    q++
  }
}

const XML_DECLARATION_START = /<\?xml[ \t\r\n?]/y

const LT = 0x3c
const GT = 0x3e
const SLASH = 0x2f
const BANG = 0x21
const QUESTION = 0x3f
const EQUALS = 0x3d
const COLON = 0x3a
const DQUOTE = 0x22
const SQUOTE = 0x27

/** XML white space only: the parser would take other control characters for spaces inside tags. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d
}

function malformed(what: string, at: number): XmlScanError {
  return new XmlScanError('malformed', `malformed XML: ${what} at offset ${at}`)
}

/**
 * Scans `xml` once, in linear time, and throws XmlScanError at the first limit exceeded or markup not
 * accepted. Only the XML declaration at the very start is accepted as a processing instruction; no
 * markup declaration outside the allowed DOCTYPE is.
 */
export function scanXml(xml: string, limits: XmlLimits, policy: XmlMarkupPolicy): XmlShape {
  const doctype = policy.doctype && new RegExp(policy.doctype.source, 'y')
  const start = xml.charCodeAt(0) === 0xfeff ? 1 : 0
  // Open elements, as where their names start and end in `xml`: no string per element, and a typed
  // array that pop does not shrink (a JavaScript array reallocates as it grows and shrinks).
  let names = new Int32Array(128)
  let depth = 0
  const shape: XmlShape = { depth: 0, elements: 0, attributes: 0, namespaceDeclarations: 0 }
  let rootSeen = false
  let doctypeSeen = false
  let pos = start
  // The next '<' at or after `pos`, found while reading a start tag and reused by the main loop.
  let nextLt = -2

  for (;;) {
    const lt = nextLt >= pos ? nextLt : xml.indexOf('<', pos)
    if (depth === 0) {
      // Outside the root element only white space may stand between markup.
      const end = lt < 0 ? xml.length : lt
      for (let i = pos; i < end; i++) if (!isSpace(xml.charCodeAt(i))) throw malformed('text outside the root element', i)
    }
    if (lt < 0) break
    const c = xml.charCodeAt(lt + 1)

    if (c === SLASH) {
      if (depth === 0) throw malformed('end tag without a start tag', lt)
      depth--
      const nameStart = names[2 * depth]!
      const nameStop = names[2 * depth + 1]!
      // The name must be the open element's, whole (not a prefix of a longer name).
      if (nameEnd(xml, lt + 2) !== lt + 2 + nameStop - nameStart) throw malformed('end tag does not match the open element', lt)
      for (let i = nameStart, j = lt + 2; i < nameStop; i++, j++) {
        if (xml.charCodeAt(i) !== xml.charCodeAt(j)) throw malformed('end tag does not match the open element', lt)
      }
      let p = lt + 2 + nameStop - nameStart
      while (isSpace(xml.charCodeAt(p))) p++
      if (xml.charCodeAt(p) !== GT) throw malformed('unterminated end tag', lt)
      pos = p + 1
    } else if (c === BANG) {
      if (xml.startsWith('<!--', lt)) {
        if (!policy.comments) throw new XmlScanError('comment', 'XML comments are not accepted')
        // XML forbids "--" inside a comment, so the first "--" must be the end.
        const dashes = xml.indexOf('--', lt + 4)
        if (dashes < 0 || xml.charCodeAt(dashes + 2) !== GT) throw malformed('comment', lt)
        pos = dashes + 3
      } else if (xml.startsWith('<![CDATA[', lt)) {
        if (depth === 0) throw malformed('CDATA outside the root element', lt)
        const end = xml.indexOf(']]>', lt + 9)
        if (end < 0) throw malformed('unterminated CDATA section', lt)
        pos = end + 3
      } else if (xml.slice(lt + 2, lt + 9).toUpperCase() === 'DOCTYPE') {
        if (!doctype) throw new XmlScanError('doctype', 'DOCTYPE declarations are not accepted')
        doctype.lastIndex = lt
        const m = doctype.exec(xml)
        if (!m || rootSeen || doctypeSeen) throw new XmlScanError('doctype', 'DOCTYPE declarations other than the accepted one are not accepted')
        doctypeSeen = true
        pos = lt + m[0].length
      } else {
        throw new XmlScanError('declaration', 'entities and other markup declarations are not accepted')
      }
    } else if (c === QUESTION) {
      XML_DECLARATION_START.lastIndex = lt
      if (lt !== start || !XML_DECLARATION_START.test(xml)) {
        throw new XmlScanError('declaration', 'processing instructions other than the XML declaration are not accepted')
      }
      const end = xml.indexOf('?>', lt + 5)
      if (end < 0) throw malformed('unterminated XML declaration', lt)
      pos = end + 2
    } else {
      // A start tag. It cannot contain '<' (not even in attribute values), so it ends before the next
      // one: every step below stays within the tag, and the main loop reuses `nextLt`.
      const nameStop = nameEnd(xml, lt + 1)
      if (nameStop === lt + 1) throw malformed('tag without a name', lt)
      if (rootSeen && depth === 0) throw malformed('second root element', lt)
      rootSeen = true
      if (depth + 1 > limits.maxDepth) throw new XmlScanError('depth', `XML nested deeper than ${limits.maxDepth}`)
      if (depth + 1 > shape.depth) shape.depth = depth + 1
      if (++shape.elements > limits.maxElements) throw new XmlScanError('limit', `XML has more than ${limits.maxElements} elements`)
      nextLt = xml.indexOf('<', lt + 1)
      const tagEnd = nextLt < 0 ? xml.length : nextLt
      let attributes = 0
      let namespaces = 0
      let p = nameStop
      for (;;) {
        const spaceFrom = p
        while (isSpace(xml.charCodeAt(p))) p++
        const ch = xml.charCodeAt(p)
        if (ch === GT) {
          if (2 * depth + 2 > names.length) {
            const grown = new Int32Array(2 * names.length)
            grown.set(names)
            names = grown
          }
          names[2 * depth] = lt + 1
          names[2 * depth + 1] = nameStop
          depth++
          pos = p + 1
          break
        }
        if (ch === SLASH) {
          if (xml.charCodeAt(p + 1) !== GT) throw malformed("'/' not followed by '>'", p)
          pos = p + 2
          break
        }
        if (p === spaceFrom) throw malformed('attribute not preceded by white space', p)
        const attribute = p
        p = nameEnd(xml, p)
        if (p === attribute) throw malformed('attribute without a name', p)
        // xmlns or xmlns:prefix
        const declaresNamespace = xml.startsWith('xmlns', attribute) && (p === attribute + 5 || xml.charCodeAt(attribute + 5) === COLON)
        while (isSpace(xml.charCodeAt(p))) p++
        if (xml.charCodeAt(p) !== EQUALS) throw malformed("attribute without '='", p)
        p++
        while (isSpace(xml.charCodeAt(p))) p++
        const quote = xml.charCodeAt(p)
        if (quote !== DQUOTE && quote !== SQUOTE) throw malformed('attribute value not quoted', p)
        const close = xml.indexOf(quote === DQUOTE ? '"' : "'", p + 1)
        if (close < 0 || close > tagEnd) throw malformed("unterminated attribute value or '<' in it", p)
        p = close + 1
        if (++attributes > limits.maxAttributesPerElement) {
          throw new XmlScanError('limit', `an XML element has more than ${limits.maxAttributesPerElement} attributes`)
        }
        if (++shape.attributes > limits.maxAttributes) throw new XmlScanError('limit', `XML has more than ${limits.maxAttributes} attributes`)
        if (declaresNamespace) {
          if (++namespaces > limits.maxNamespaceDeclarationsPerElement) {
            throw new XmlScanError('limit', `an XML element declares more than ${limits.maxNamespaceDeclarationsPerElement} namespaces`)
          }
          if (++shape.namespaceDeclarations > limits.maxNamespaceDeclarations) {
            throw new XmlScanError('limit', `XML declares more than ${limits.maxNamespaceDeclarations} namespaces`)
          }
        }
      }
    }
  }
  if (depth) throw malformed('unclosed element', xml.length)
  if (!rootSeen) throw malformed('no root element', xml.length)
  return shape
}

/**
 * The first line of a parser's error message, cut short: xmldom quotes the offending name or text,
 * which can be most of a megabyte, and these messages reach logs and responses.
 */
export function parserMessage(message: unknown): string {
  const line = String(message).split('\n', 1)[0]!
  return line.length > 160 ? `${line.slice(0, 160)}...` : line
}

const ELEMENT_NODE = 1

/**
 * True when an element of `root` sits more than `max` elements deep (root itself is depth 1), measured
 * on the parsed tree without recursion. `scanXml` already refuses such documents before parsing; this
 * stays as a cheap (linear) second check on what the parser actually built, in case the two ever
 * disagreed, because our recursive readers would overflow the stack on a deep tree.
 */
export function elementDepthExceeds(root: XmlNode, max: number): boolean {
  const stack: [XmlNode, number][] = [[root, 1]]
  while (stack.length) {
    const [node, depth] = stack.pop()!
    if (depth > max) return true
    for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
      if (c.nodeType === ELEMENT_NODE) stack.push([c, depth + 1])
    }
  }
  return false
}

/** Characters XML 1.0 forbids even as character references; Postgres text cannot hold U+0000 either. */
// eslint-disable-next-line no-control-regex
export const XML_ILLEGAL_CHARACTERS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/
