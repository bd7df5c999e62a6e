/**
 * XML shapes from SECURITY.md row 25, each filling about `bytes` characters (ASCII, so bytes too), and
 * the timing helpers the tests compare them with. The shapes are fragments: callers wrap them in a
 * plist, a SAMLResponse or nothing.
 */

/** Repeats `unit` as often as fits in `bytes`. */
export function fill(unit: string, bytes: number): string {
  return unit.repeat(Math.max(0, Math.floor(bytes / unit.length)))
}

/**
 * Nesting that declares a new namespace prefix on every level: quadratic in @xmldom/xmldom (each
 * level's namespace map inherits from the one above, and lookups walk the chain). `prefixed: false`
 * keeps the elements unprefixed, which makes every element's default-namespace lookup walk it all.
 */
export function namespacePerLevel(bytes: number, options: { prefixed?: boolean } = {}): string {
  const prefixed = options.prefixed ?? true
  const open: string[] = []
  const close: string[] = []
  let size = 0
  for (let i = 0; ; i++) {
    const o = prefixed ? `<p${i}:a xmlns:p${i}="u">` : `<a xmlns:p${i}="u">`
    const c = prefixed ? `</p${i}:a>` : '</a>'
    if (size + o.length + c.length > bytes) break
    size += o.length + c.length
    open.push(o)
    close.push(c)
  }
  return open.join('') + close.reverse().join('')
}

/** Plain nesting, `<a>` in `<a>`... */
export function deepNesting(bytes: number, element = 'a'): string {
  const levels = Math.floor(bytes / (2 * element.length + 5))
  return `<${element}>`.repeat(levels) + `</${element}>`.repeat(levels)
}

/** Siblings: `element` repeated. */
export function wideElements(bytes: number, element = '<a/>'): string {
  return fill(element, bytes)
}

/** One element with as many distinct attributes as fit. */
export function attributeHeavy(bytes: number, element = 'a'): string {
  const attributes: string[] = []
  let size = element.length + 4
  for (let i = 0; size < bytes - 16; i++) {
    const a = ` a${i}="${i}"`
    attributes.push(a)
    size += a.length
  }
  return `<${element}${attributes.join('')}/>`
}

/** One element declaring as many namespace prefixes as fit, each used by an attribute. */
export function namespaceDeclarations(bytes: number, element = 'a'): string {
  const attributes: string[] = []
  let size = element.length + 4
  for (let i = 0; size < bytes - 32; i++) {
    const a = ` xmlns:p${i}="u${i}" p${i}:x=""`
    attributes.push(a)
    size += a.length
  }
  return `<${element}${attributes.join('')}/>`
}

/** Many elements with a few attributes each. */
export function attributedElements(bytes: number): string {
  return fill('<a b="1" c="2" d="3"/>', bytes)
}

/** Depth hidden from a naive text scan by markup in quotes, comments and CDATA. */
export function hiddenDepth(bytes: number): string {
  const open = `<a b="/>" c='>'><!-- </a> --><![CDATA[</a>]]>`
  const levels = Math.floor(bytes / (open.length + 4))
  return open.repeat(levels) + '</a>'.repeat(levels)
}

/**
 * The normal case of the same size: a flat array of ordinary dicts, like the InstalledApplicationList
 * or ProfileList a device reports.
 */
export function ordinaryDicts(bytes: number): string {
  const dict = (i: number) =>
    `<dict><key>Identifier</key><string>com.example.app${i}</string><key>Name</key><string>App ${i}</string><key>Version</key><string>1.2.${i}</string><key>BundleSize</key><integer>${1000 + i}</integer><key>IsValidated</key><true/></dict>`
  const parts: string[] = []
  let size = 15
  for (let i = 0; ; i++) {
    const d = dict(i)
    if (size + d.length > bytes) break
    parts.push(d)
    size += d.length
  }
  return `<array>${parts.join('')}</array>`
}

/** Milliseconds `fn` takes, synchronous or not. */
export async function timed(fn: () => unknown): Promise<number> {
  const start = performance.now()
  await fn()
  return performance.now() - start
}

/** The fastest of `runs` timings: the least disturbed by the other work on a shared machine. */
export async function fastest(runs: number, fn: () => unknown): Promise<number> {
  let best = Infinity
  for (let i = 0; i < runs; i++) best = Math.min(best, await timed(fn))
  return best
}

/**
 * The fastest times of `a` and of `b` over `runs` alternating runs: both meet the same load of the
 * shared machine, so their ratio means something.
 */
export async function fastestOfEach(runs: number, a: () => unknown, b: () => unknown): Promise<[number, number]> {
  let bestA = Infinity
  let bestB = Infinity
  for (let i = 0; i < runs; i++) {
    bestA = Math.min(bestA, await timed(a))
    bestB = Math.min(bestB, await timed(b))
  }
  return [bestA, bestB]
}
