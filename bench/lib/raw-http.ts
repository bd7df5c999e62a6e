/**
 * A lean HTTP/1.1 client for the benchmarks' own load (the command cycle): requests are prepared as bytes
 * ahead of time and each keep-alive connection reads one response at a time by its Content-Length. Node's
 * http client cost about 0.2 ms of CPU per request here, four times what autocannon spends on the
 * baseline's; on a machine the load generator shares with the server, that CPU was taken from the server
 * being measured.
 */
import net from 'node:net'

/**
 * The whole request (request line, headers, body) as bytes, sent as is. Host and Content-Length are this
 * function's own: a headers object that autocannon has used carries its Content-Length, and a second one
 * makes the request unreadable (400).
 */
export function requestBytes(method: string, path: string, host: string, headers: Record<string, string>, body: Buffer): Buffer {
  const own = new Set(['host', 'content-length'])
  const rest = Object.entries(headers).filter(([k]) => !own.has(k.toLowerCase()))
  const lines = [`${method} ${path} HTTP/1.1`, `host: ${host}`, ...rest.map(([k, v]) => `${k}: ${v}`), `content-length: ${body.length}`, '', '']
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body])
}

export interface RawResponse {
  status: number
  body: Buffer
}

export class RawConnection {
  private buffered: Buffer = Buffer.alloc(0)
  private waiting: { resolve(r: RawResponse): void; reject(err: Error): void } | undefined

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk
      this.answer()
    })
    const fail = (err: Error) => {
      const w = this.waiting
      this.waiting = undefined
      w?.reject(err)
    }
    socket.on('error', fail)
    socket.on('close', () => fail(new Error('connection closed')))
  }

  static open(host: string, port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => {
        socket.off('error', reject)
        resolve(new RawConnection(socket))
      })
      socket.once('error', reject)
    })
  }

  /** Sends one prepared request and resolves with its response; one at a time per connection. */
  request(bytes: Buffer): Promise<RawResponse> {
    if (this.waiting) return Promise.reject(new Error('a request is already in flight on this connection'))
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.socket.write(bytes)
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private answer(): void {
    const end = this.buffered.indexOf('\r\n\r\n')
    if (end < 0 || !this.waiting) return
    const head = this.buffered.toString('latin1', 0, end)
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    if (!length) {
      const w = this.waiting
      this.waiting = undefined
      w.reject(new Error(`response without Content-Length: ${head.split('\r\n')[0]}`))
      return
    }
    const total = end + 4 + Number(length[1])
    if (this.buffered.length < total) return
    const response = { status: Number(head.slice(9, 12)), body: this.buffered.subarray(end + 4, total) }
    this.buffered = this.buffered.subarray(total)
    const w = this.waiting
    this.waiting = undefined
    w.resolve(response)
  }
}
