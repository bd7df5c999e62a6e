/**
 * Strict XML reading for SAML documents (IdP metadata, SAMLResponse). Pure: no I/O.
 *
 * A pre-scan refuses what a SAML document never needs and attackers rely on: DOCTYPE and entity
 * declarations (XXE, billion laughs), processing instructions and comments. Comments matter for SAML in
 * particular: exclusive canonicalization drops them, so a comment inserted into a signed NameID
 * (`alice@example.com<!---->.evil.test`) keeps the signature valid while naive readers see only the
 * first text node (CVE-2017-11427 and relatives). Refusing every comment closes that class for good.
 *
 * The pre-scan (`scanXml`, protocol/xml-limits.ts) reads the text once, in linear time, before the
 * parser sees it, and also bounds nesting, elements, attributes and namespace declarations: the
 * assertion consumer parses what anyone posts, before any sign-in, and the parser is quadratic on
 * some shapes (a new namespace prefix per nesting level).
 */
import { DOMParser, type Document, type Element, type Node as XmlNode } from '@xmldom/xmldom'
import { elementDepthExceeds, parserMessage, scanXml, XmlScanError, type XmlLimits } from '../../protocol/xml-limits.js'

export const NS = {
  protocol: 'urn:oasis:names:tc:SAML:2.0:protocol',
  assertion: 'urn:oasis:names:tc:SAML:2.0:assertion',
  metadata: 'urn:oasis:names:tc:SAML:2.0:metadata',
  dsig: 'http://www.w3.org/2000/09/xmldsig#',
} as const

export class XmlRefused extends Error {
  override name = 'XmlRefused'
}

/**
 * For SAMLResponses (and the assertion node-saml hands back): at most MAX_SAML_RESPONSE_LENGTH of
 * base64, ~192 KB of XML, posted by anyone before any sign-in. A response has tens to hundreds of
 * elements (a few thousand with a long group list: Azure and Okta cap group claims at 150-200 values)
 * and a handful of attributes per element. Namespace declarations are not few in total: some IdPs
 * (Okta, samlify's templates) declare xmlns:xs and xmlns:xsi on every AttributeValue, and the
 * exclusive canonicalization that node-saml hands back repeats xmlns:xsi on each of them; so the
 * total follows the element count, while the cost that matters, namespace scopes nested in one
 * another, is bounded by the depth. Elements dominate parse time and memory: 10,000 keep the
 * unauthenticated parse within a few tens of milliseconds.
 */
export const SAML_XML_LIMITS: XmlLimits = {
  maxDepth: 64,
  maxElements: 10_000,
  maxAttributesPerElement: 32,
  maxAttributes: 20_000,
  maxNamespaceDeclarationsPerElement: 16,
  maxNamespaceDeclarations: 10_000,
}

/**
 * For IdP metadata: a file the administrator configures, read once at startup, not attacker input,
 * and possibly a federation aggregate (EntitiesDescriptor) with thousands of entities, each declaring
 * its namespaces again. The totals are loose; depth and the per-element bounds still keep parsing linear.
 */
export const SAML_METADATA_XML_LIMITS: XmlLimits = {
  maxDepth: 64,
  maxElements: 5_000_000,
  maxAttributesPerElement: 64,
  maxAttributes: 10_000_000,
  maxNamespaceDeclarationsPerElement: 32,
  maxNamespaceDeclarations: 1_000_000,
}

/** Parses `xml` with every XML error fatal, after the pre-scan. Throws XmlRefused. */
export function parseStrictXml(xml: string, limits: XmlLimits = SAML_XML_LIMITS): Document {
  const body = xml.replace(/^\uFEFF/, '')
  try {
    scanXml(body, limits, { comments: false })
  } catch (err) {
    if (err instanceof XmlScanError) throw new XmlRefused(err.message)
    throw err
  }
  // xmldom wraps what onError throws into its own ParseError; keep ours to rethrow it unwrapped.
  let refused: XmlRefused | undefined
  try {
    const doc = new DOMParser({
      onError: (level: string, message: string) => {
        refused ??= new XmlRefused(`malformed XML (${level}): ${parserMessage(message)}`)
        throw refused
      },
    }).parseFromString(body, 'text/xml')
    if (!doc.documentElement) throw new XmlRefused('no root element')
    // Already refused by the scan; kept as a cheap check on the tree the parser built (see xml-limits.ts).
    if (elementDepthExceeds(doc.documentElement, limits.maxDepth)) throw new XmlRefused(`XML nested deeper than ${limits.maxDepth}`)
    return doc
  } catch (err) {
    if (refused) throw refused
    if (err instanceof XmlRefused) throw err
    throw new XmlRefused(`malformed XML: ${parserMessage((err as Error).message)}`)
  }
}

const ELEMENT_NODE = 1
const TEXT_NODE = 3
const CDATA_NODE = 4

/** Element children of `node` with the given namespace and local name. */
export function children(node: Element | Document, ns: string, localName: string): Element[] {
  const out: Element[] = []
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === ELEMENT_NODE && (c as Element).namespaceURI === ns && (c as Element).localName === localName) out.push(c as Element)
  }
  return out
}

/** The only such child, undefined when there is none; throws when there are several. */
export function onlyChild(node: Element, ns: string, localName: string): Element | undefined {
  const found = children(node, ns, localName)
  if (found.length > 1) throw new XmlRefused(`more than one <${localName}> in <${node.localName}>`)
  return found[0]
}

/** Every descendant element with the given namespace and local name. */
export function descendants(node: Element | Document, ns: string, localName: string): Element[] {
  return Array.from(node.getElementsByTagNameNS(ns, localName))
}

/** Text of a leaf element (text and CDATA joined); child elements are an error. */
export function textOf(node: Element): string {
  let text = ''
  for (let c: XmlNode | null = node.firstChild; c; c = c.nextSibling) {
    if (c.nodeType === TEXT_NODE || c.nodeType === CDATA_NODE) text += c.nodeValue ?? ''
    else if (c.nodeType === ELEMENT_NODE) throw new XmlRefused(`unexpected element inside <${node.localName}>`)
  }
  return text
}

/** An attribute value, or undefined when absent. */
export function attr(node: Element, name: string): string | undefined {
  return node.hasAttribute(name) ? node.getAttribute(name)! : undefined
}
