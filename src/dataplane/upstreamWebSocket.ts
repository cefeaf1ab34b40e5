// The WebSocket client leg toward a backend (RFC 6455), on one net or TLS socket and nothing else:
// an idle proxied session costs the socket plus one small object, where the `ws` client with its
// stream-based receiver and the node:http handshake cost about twice as much (docs/BENCHMARKS.md).

// Imported: the global `Buffer` is an accessor, read through a getter at each use.
import { Buffer, isUtf8 } from 'node:buffer';
import { connect as netConnect, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import type { ConnectionOptions } from 'node:tls';
import { upstreamFailure } from '../core/errors.js';
import { connectTls, type TlsConnectOptions } from '../core/upstreamTls.js';
import { READ_BUFFER, detached } from './readBuffer.js';
import { headerValue } from '../core/httpSyntax.js';
import { chunkSizeOf, parseResponseHead } from './responseHead.js';

/** What the session is told by its upstream leg. Exactly one of open, refusal or error ends the handshake. */
export interface UpstreamHandler {
  onUpstreamOpen(protocol: string): void;
  /** The backend answered the upgrade with another status; its body is cut at REFUSAL_BODY_LIMIT. */
  onUpstreamRefusal(status: number, statusMessage: string, contentType: string | undefined, body: Buffer): void;
  /** Connect, TLS or handshake failure before open; a socket error after it (a close follows). */
  onUpstreamError(err: Error & { code?: string }): void;
  /** `data` is valid only during the call (it may sit in the worker's shared read buffer): copy what is kept. */
  onUpstreamMessage(data: Buffer, isBinary: boolean): void;
  onUpstreamPong(): void;
  /** Once, after open: the backend's close frame (1005 without a code) or 1006 for a lost connection. */
  onUpstreamClose(code: number, reason: Buffer): void;
}

export interface UpstreamTarget {
  host: string;
  port: number;
  tls: TlsConnectOptions | undefined;
  /** Path with query string. */
  path: string;
  /** Flat [name, value, …] list; the handshake's own headers are added here. */
  headers: string[];
  /** Subprotocols offered, as the client sent them ('' for none). */
  protocols: string;
  /** Offer permessage-deflate (RFC 7692) without context takeover either way. */
  compress: boolean;
  maxMessage: number;
  connectTimeout: number;
  /** From the connection to the backend's answer. */
  responseTimeout: number;
}

export const REFUSAL_BODY_LIMIT = 64 * 1024;
const HEAD_LIMIT = 16 * 1024;
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A backend that never answers our close frame must not hold the socket forever. */
const CLOSE_WAIT_MS = 5000;

/** Messages shorter than this go uncompressed (as the `ws` library's default threshold). */
export const COMPRESS_THRESHOLD = 1024;
/**
 * Messages toward a backend longer than this go uncompressed: each is deflated in one call on the
 * worker's thread, which a 16 MiB message would hold for tens of milliseconds.
 */
const COMPRESS_LIMIT = 1024 * 1024;
/** What the offer asks for: each message compressed on its own, so each is inflated in one call. */
const DEFLATE_OFFER = 'permessage-deflate; client_no_context_takeover; server_no_context_takeover';
/** The end of a sync-flushed deflate stream, left off each message (RFC 7692 7.2.1). */
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const RSV1 = 0x40;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

const enum Phase {
  Handshake,
  /** Reading a refused handshake's body. */
  Refusal,
  Open,
  Closed,
}

const enum Stage {
  Info,
  Length16,
  Length64,
  Payload,
}

/**
 * node:crypto, loaded with the first upstream WebSocket, and node:zlib with the first compressed
 * message: a worker that relays none loads neither (4–5 ms of each worker thread's start here).
 */
let nodeCrypto: typeof import('node:crypto') | undefined;
let zlib: typeof import('node:zlib') | undefined;
const cryptoModule = () => (nodeCrypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto'));
const zlibModule = () => (zlib ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));

/** Masking keys, taken 4 bytes at a time from one random block refilled when used up. */
const maskPool = Buffer.alloc(8192);
let maskOffset = maskPool.length;
/** The key of the frame being made (nextMask fills it): one buffer for every frame, none allocated. */
const KEY = Buffer.alloc(4);

function nextMask(): Buffer {
  if (maskOffset === maskPool.length) {
    cryptoModule().randomFillSync(maskPool);
    maskOffset = 0;
  }
  for (let i = 0; i < 4; i++) KEY[i] = maskPool[maskOffset++];
  return KEY;
}

/** bufferutil's native mask, loaded with the first frame: a worker that relays no WebSocket message never loads it (5 ms of each worker thread's start here). */
let bufferUtil: typeof import('bufferutil').default | undefined;

/** A masked client frame carrying `payload` (valid only during the call: it is copied into the frame). */
function frame(opcode: number, payload: Uint8Array, rsv = 0): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const headerLength = 2 + lengthBytes + 4;
  const out = Buffer.allocUnsafe(headerLength + length);
  out[0] = 0x80 | rsv | opcode;
  if (lengthBytes === 0) out[1] = 0x80 | length;
  else if (lengthBytes === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    out.writeUInt32BE(length % 2 ** 32, 6);
  }
  const mask = nextMask();
  for (let i = 0; i < 4; i++) out[headerLength - 4 + i] = mask[i];
  if (length > 0) (bufferUtil ??= createRequire(import.meta.url)('bufferutil') as typeof import('bufferutil').default).mask(payload as Buffer, mask, out, headerLength, length);
  return out;
}

function closePayload(code: number, reason: Buffer | string): Buffer {
  if (code === 0) return Buffer.alloc(0);
  const text = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const payload = Buffer.allocUnsafe(2 + Math.min(text.length, 123));
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2, 0, payload.length - 2);
  return payload;
}

/** The body of a chunked response as far as it has come, and whether its last chunk has. */
function decodeChunked(raw: Buffer): { body: Buffer; complete: boolean; malformed: boolean } {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd < 0) break;
    const size = chunkSizeOf(raw.toString('latin1', at, lineEnd));
    if (size < 0) return { body: Buffer.concat(parts), complete: false, malformed: true };
    if (size === 0) return { body: Buffer.concat(parts), complete: true, malformed: false };
    const start = lineEnd + 2;
    parts.push(raw.subarray(start, Math.min(start + size, raw.length)));
    if (start + size + 2 > raw.length) break;
    // The same rule as the HTTP client's: chunk data ends with CRLF.
    if (raw[start + size] !== 13 || raw[start + size + 1] !== 10) return { body: Buffer.concat(parts), complete: false, malformed: true };
    at = start + size + 2;
  }
  return { body: Buffer.concat(parts), complete: false, malformed: false };
}

/**
 * Whether the backend's Sec-WebSocket-Extensions accepts our offer: permessage-deflate alone,
 * without context takeover on its side (each message must inflate on its own), and no parameter
 * that was not offered other than a smaller window of its own. Returns what is wrong, or ''.
 */
function deflateAnswerProblem(value: string): string {
  if (value.includes(',')) return 'more than one extension';
  const [name, ...params] = value.split(';').map((part) => part.trim().toLowerCase());
  if (name !== 'permessage-deflate') return 'an extension that was not offered';
  const seen = new Set<string>();
  for (const param of params) {
    const [key, arg] = param.split('=').map((part) => part.trim());
    if (seen.has(key)) return 'a permessage-deflate parameter twice';
    seen.add(key);
    if ((key === 'server_no_context_takeover' || key === 'client_no_context_takeover') && arg === undefined) continue;
    if (key === 'server_max_window_bits' && /^(8|9|1[0-5])$/.test(arg?.replace(/"/g, '') ?? '')) continue;
    return `a permessage-deflate parameter that was not offered (${param})`;
  }
  return seen.has('server_no_context_takeover') ? '' : 'permessage-deflate with context takeover';
}

/** Close codes a peer may send (RFC 6455 7.4.1, 7.4.2). */
function validCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

export class UpstreamWebSocket {
  private phase = Phase.Handshake;
  private readonly socket: Socket;
  private timer: NodeJS.Timeout | undefined;
  /** Received bytes not parsed yet. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  // Frame being read.
  private stage = Stage.Info;
  private fin = false;
  private opcode = 0;
  private payloadLength = 0;
  /** Data frames of a fragmented message so far, and its first opcode. */
  private fragments: Buffer[] | null = null;
  private fragmentBytes = 0;
  private messageOpcode = 0;
  /** permessage-deflate was agreed; the frame being read has RSV1; the message being read is compressed. */
  private deflate = false;
  private frameCompressed = false;
  private messageCompressed = false;
  private closeSent = false;
  private closeReported = false;
  /** Only while the handshake is under way. */
  private key: string | null;
  private offered: string[] | null;
  private offeredDeflate: boolean;
  private refusal: { status: number; statusMessage: string; contentType: string | undefined; /** -1: until the connection ends. */ length: number; chunked: boolean } | null = null;
  private readonly maxMessage: number;

  constructor(
    private readonly handler: UpstreamHandler,
    target: UpstreamTarget,
  ) {
    this.maxMessage = target.maxMessage;
    this.offeredDeflate = target.compress;
    this.key = cryptoModule().randomBytes(16).toString('base64');
    this.offered = target.protocols ? target.protocols.split(',').map((p) => p.trim()).filter(Boolean) : [];
    const onread = { buffer: READ_BUFFER, callback: (length: number, buffer: Buffer) => this.onRead(length, buffer) };
    const socket = target.tls
      ? // tls.connect takes `onread` as net.connect does (the typings lack it).
      connectTls({ host: target.host, port: target.port, ...target.tls, onread } as ConnectionOptions)
      : netConnect({ host: target.host, port: target.port, onread });
    this.socket = socket;
    socket.setNoDelay(true);
    // Closures here must not use `target`: they live as long as the socket, and so would its headers.
    const { responseTimeout } = target;
    this.timer = setTimeout(() => this.fail(upstreamFailure('FAIRWAY_CONNECT_TIMEOUT', 'the backend did not accept the connection in time')), target.connectTimeout);
    socket.once(target.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.fail(upstreamFailure('FAIRWAY_HANDSHAKE_TIMEOUT', 'the backend did not answer the upgrade in time')), responseTimeout);
    });
    socket.on('error', (err) => this.onSocketError(err));
    socket.on('close', () => this.onSocketClose());
    socket.write(this.requestHead(target), 'latin1');
  }

  get isOpen(): boolean {
    return this.phase === Phase.Open;
  }

  /** Bytes written but not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  private requestHead(target: UpstreamTarget): string {
    const { headers } = target;
    let head = `GET ${target.path} HTTP/1.1\r\n`;
    let hasHost = false;
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === 'host') hasHost = true;
      head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    }
    if (!hasHost) head += `host: ${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}\r\n`;
    head += `connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${this.key}\r\n`;
    if (target.protocols) head += `sec-websocket-protocol: ${target.protocols}\r\n`;
    if (target.compress) head += `sec-websocket-extensions: ${DEFLATE_OFFER}\r\n`;
    return `${head}\r\n`;
  }

  send(data: Uint8Array, isBinary: boolean): void {
    if (this.phase !== Phase.Open || this.closeSent) return;
    const opcode = isBinary ? OP_BINARY : OP_TEXT;
    if (this.deflate && data.length >= COMPRESS_THRESHOLD && data.length <= COMPRESS_LIMIT) {
      // The fastest level: a proxy's CPU is the scarce part. Sent as it is when it does not shrink.
      const { constants, deflateRawSync } = zlibModule();
      const packed = deflateRawSync(data, { level: constants.Z_BEST_SPEED, finishFlush: constants.Z_SYNC_FLUSH });
      if (packed.length - DEFLATE_TAIL.length < data.length) {
        this.socket.write(frame(opcode, packed.subarray(0, packed.length - DEFLATE_TAIL.length), RSV1));
        return;
      }
    }
    this.socket.write(frame(opcode, data));
  }

  ping(): void {
    if (this.phase === Phase.Open && !this.closeSent) this.socket.write(frame(OP_PING, Buffer.alloc(0)));
  }

  /** Starts the closing handshake; the socket is cut if the backend does not finish it. */
  close(code: number, reason: Buffer | string = ''): void {
    if (this.phase !== Phase.Open || this.closeSent) return;
    this.closeSent = true;
    this.socket.write(frame(OP_CLOSE, closePayload(code, reason)));
    this.timer = setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS);
    this.timer.unref();
  }

  /** Cuts the connection: an open one reports its close (1006), a handshake nothing more. */
  terminate(): void {
    if (this.phase === Phase.Handshake || this.phase === Phase.Refusal) {
      this.phase = Phase.Closed;
      clearTimeout(this.timer);
    }
    this.socket.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  // ---- reading -------------------------------------------------------------------------------

  private onRead(length: number, buffer: Buffer): boolean {
    try {
      this.onData(buffer.subarray(0, length));
    } catch (err) {
      // What cannot be relayed ends this session, not the worker.
      this.fail(err as Error);
    }
    // What is left unparsed still points into the shared buffer, which the next read overwrites.
    const { chunks } = this;
    for (let i = 0; i < chunks.length; i++) chunks[i] = detached(chunks[i]);
    // false would stop reading; pause() and resume() still govern it.
    return true;
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.phase === Phase.Handshake) this.readHandshake();
    if (this.phase === Phase.Refusal) this.readRefusal(false);
    if (this.phase === Phase.Open) this.readFrames();
  }

  /** The buffered byte `i` places on (i < buffered). */
  private byteAt(i: number): number {
    let k = 0;
    while (i >= this.chunks[k].length) i -= this.chunks[k++].length;
    return this.chunks[k][i];
  }

  /** Drops `n` buffered bytes (n ≤ buffered). */
  private drop(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const first = this.chunks[0];
      if (n < first.length) {
        this.chunks[0] = first.subarray(n);
        return;
      }
      this.chunks.shift();
      n -= first.length;
    }
  }

  /** Takes `n` buffered bytes (n ≤ buffered), without a copy when they sit in one chunk. */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0];
    if (n === first.length) {
      this.chunks.shift();
      return first;
    }
    if (n < first.length) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0];
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      filled += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    return out;
  }

  private readHandshake(): void {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [all];
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length > HEAD_LIMIT) this.fail(upstreamFailure('FAIRWAY_BAD_HANDSHAKE', 'the backend sent an oversized response head'));
      return;
    }
    const parsed = parseResponseHead(all, end);
    this.take(end + 4);
    if (typeof parsed === 'string') return this.fail(upstreamFailure('FAIRWAY_BAD_HANDSHAKE', parsed));
    const { statusCode: code, statusMessage, headers } = parsed;
    if (code === 101) return this.completeHandshake(headers);
    const bodiless = code === 204 || code === 304 || code < 200;
    this.phase = Phase.Refusal;
    this.refusal = {
      status: code,
      statusMessage,
      contentType: headerValue(headers, 'content-type'),
      // Transfer-Encoding wins over Content-Length (RFC 9112 6.3), as in the HTTP client.
      length: bodiless ? 0 : parsed.transferEncoding ? -1 : parsed.length,
      chunked: !bodiless && parsed.chunked,
    };
  }

  private completeHandshake(headers: string[]): void {
    const expected = cryptoModule().createHash('sha1').update(`${this.key}${ACCEPT_GUID}`).digest('base64');
    const protocol = headerValue(headers, 'sec-websocket-protocol') ?? '';
    let problem = '';
    if (headerValue(headers, 'upgrade')?.toLowerCase() !== 'websocket') problem = 'no "Upgrade: websocket"';
    else if (headerValue(headers, 'sec-websocket-accept') !== expected) problem = 'a wrong Sec-WebSocket-Accept';
    else if (protocol && !this.offered!.includes(protocol)) problem = 'a subprotocol that was not offered';
    const extensions = headerValue(headers, 'sec-websocket-extensions');
    if (!problem && extensions !== undefined) {
      problem = this.offeredDeflate ? deflateAnswerProblem(extensions) : 'an extension that was not offered';
      this.deflate = problem === '';
    }
    if (problem) return this.fail(upstreamFailure('FAIRWAY_BAD_HANDSHAKE', `the backend's 101 had ${problem}`));
    clearTimeout(this.timer);
    this.timer = undefined;
    this.key = null;
    this.offered = null;
    this.phase = Phase.Open;
    this.handler.onUpstreamOpen(protocol);
  }

  /** A refused upgrade's body, up to REFUSAL_BODY_LIMIT; then the answer goes to the session. */
  private readRefusal(ended: boolean): void {
    const refusal = this.refusal!;
    const raw = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [raw];
    let body: Buffer;
    let complete: boolean;
    if (refusal.chunked) {
      let malformed: boolean;
      ({ body, complete, malformed } = decodeChunked(raw));
      if (malformed) return this.fail(upstreamFailure('FAIRWAY_BAD_HANDSHAKE', 'the backend sent a malformed chunk in its refusal'));
    } else {
      complete = refusal.length >= 0 && raw.length >= refusal.length;
      body = refusal.length >= 0 ? raw.subarray(0, refusal.length) : raw;
    }
    if (!complete && !ended && raw.length <= REFUSAL_BODY_LIMIT + HEAD_LIMIT) return;
    this.refusal = null;
    this.phase = Phase.Closed;
    clearTimeout(this.timer);
    this.socket.destroy();
    this.handler.onUpstreamRefusal(refusal.status, refusal.statusMessage, refusal.contentType, Buffer.from(body.subarray(0, REFUSAL_BODY_LIMIT)));
  }

  private readFrames(): void {
    while (this.phase === Phase.Open) {
      if (this.stage === Stage.Info) {
        if (this.buffered < 2) return;
        const b0 = this.byteAt(0);
        const b1 = this.byteAt(1);
        this.drop(2);
        this.fin = (b0 & 0x80) !== 0;
        this.opcode = b0 & 0x0f;
        this.payloadLength = b1 & 0x7f;
        // RSV1 marks the first frame of a compressed message, once permessage-deflate is agreed.
        this.frameCompressed = (b0 & 0x70) === RSV1 && this.deflate && this.opcode !== OP_CONTINUATION && this.opcode < 0x8;
        if ((b0 & 0x70) !== 0 && !this.frameCompressed) return this.protocolError(1002, 'reserved bits set');
        if ((b1 & 0x80) !== 0) return this.protocolError(1002, 'a masked frame from the server');
        if (this.opcode >= 0x8) {
          if (!this.fin || this.payloadLength > 125) return this.protocolError(1002, 'a fragmented or long control frame');
          if (this.opcode > OP_PONG) return this.protocolError(1002, 'an unknown opcode');
        } else if (this.opcode > OP_BINARY) return this.protocolError(1002, 'an unknown opcode');
        else if ((this.opcode === OP_CONTINUATION) !== (this.fragments !== null)) return this.protocolError(1002, 'an unexpected continuation');
        this.stage = this.payloadLength === 126 ? Stage.Length16 : this.payloadLength === 127 ? Stage.Length64 : Stage.Payload;
      } else if (this.stage === Stage.Length16) {
        if (this.buffered < 2) return;
        this.payloadLength = this.take(2).readUInt16BE(0);
        this.stage = Stage.Payload;
      } else if (this.stage === Stage.Length64) {
        if (this.buffered < 8) return;
        const bytes = this.take(8);
        this.payloadLength = bytes.readUInt32BE(0) * 2 ** 32 + bytes.readUInt32BE(4);
        this.stage = Stage.Payload;
      } else {
        if (this.opcode < 0x8 && this.fragmentBytes + this.payloadLength > this.maxMessage) return this.protocolError(1009, 'message too big');
        if (this.buffered < this.payloadLength) return;
        const payload = this.payloadLength === 0 ? Buffer.alloc(0) : this.take(this.payloadLength);
        this.stage = Stage.Info;
        this.onFrame(payload);
      }
    }
  }

  private onFrame(payload: Buffer): void {
    const { opcode } = this;
    if (opcode === OP_PING) {
      if (!this.closeSent) this.socket.write(frame(OP_PONG, payload));
      this.handler.onUpstreamPong();
      return;
    }
    if (opcode === OP_PONG) {
      this.handler.onUpstreamPong();
      return;
    }
    if (opcode === OP_CLOSE) return this.onCloseFrame(payload);
    if (!this.fin || this.fragments) {
      if (!this.fragments) {
        this.fragments = [];
        this.messageOpcode = opcode;
        this.messageCompressed = this.frameCompressed;
      }
      this.fragments.push(Buffer.from(payload));
      this.fragmentBytes += payload.length;
      if (!this.fin) return;
      payload = Buffer.concat(this.fragments, this.fragmentBytes);
      this.fragments = null;
      this.fragmentBytes = 0;
    } else {
      this.messageOpcode = opcode;
      this.messageCompressed = this.frameCompressed;
    }
    if (this.messageCompressed) {
      try {
        const { constants, inflateRawSync } = zlibModule();
        payload = inflateRawSync(Buffer.concat([payload, DEFLATE_TAIL]), { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: Math.max(1, this.maxMessage) });
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return this.protocolError(1009, 'a compressed message that inflates past max_message');
        return this.protocolError(1007, 'a compressed message that does not inflate');
      }
    }
    if (this.messageOpcode === OP_TEXT && !isUtf8(payload)) return this.protocolError(1007, 'invalid UTF-8 in a text message');
    this.handler.onUpstreamMessage(payload, this.messageOpcode === OP_BINARY);
  }

  private onCloseFrame(payload: Buffer): void {
    let code = 1005;
    let reason = Buffer.alloc(0);
    if (payload.length === 1) return this.protocolError(1002, 'a one-byte close frame');
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      reason = Buffer.from(payload.subarray(2));
      if (!validCloseCode(code) || !isUtf8(reason)) return this.protocolError(1002, 'an invalid close frame');
    }
    if (!this.closeSent) {
      this.closeSent = true;
      this.socket.write(frame(OP_CLOSE, code === 1005 ? Buffer.alloc(0) : closePayload(code, Buffer.alloc(0))));
    }
    // The server closes the TCP connection first (RFC 6455 7.1.1); ours follows once it has.
    this.socket.end();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.socket.destroy(), CLOSE_WAIT_MS);
    this.timer.unref();
    this.reportClose(code, reason);
  }

  /** The backend broke the protocol: tell it why, drop the connection, and report a lost one. */
  private protocolError(code: number, why: string): void {
    if (!this.closeSent) {
      this.closeSent = true;
      this.socket.write(frame(OP_CLOSE, closePayload(code, '')));
    }
    this.socket.destroySoon();
    this.handler.onUpstreamError(upstreamFailure('FAIRWAY_UPSTREAM_PROTOCOL', `the backend sent ${why}`));
    this.reportClose(1006, Buffer.alloc(0));
  }

  private reportClose(code: number, reason: Buffer): void {
    if (this.closeReported) return;
    this.closeReported = true;
    this.phase = Phase.Closed;
    this.chunks = [];
    this.buffered = 0;
    this.fragments = null;
    this.handler.onUpstreamClose(code, reason);
  }

  // ---- the socket's end ------------------------------------------------------------------------

  /** Before open: the handshake failed (the session hears of it once); the socket goes. */
  private fail(err: Error & { code?: string }): void {
    if (this.phase !== Phase.Handshake && this.phase !== Phase.Refusal) return;
    this.phase = Phase.Closed;
    clearTimeout(this.timer);
    this.socket.destroy();
    this.handler.onUpstreamError(err);
  }

  private onSocketError(err: Error & { code?: string }): void {
    if (this.phase === Phase.Handshake || this.phase === Phase.Refusal) return this.fail(err);
    if (this.phase === Phase.Open && !this.closeSent) this.handler.onUpstreamError(err);
  }

  private onSocketClose(): void {
    clearTimeout(this.timer);
    // A body delimited by the end of the connection (or cut short): what came is the answer.
    if (this.phase === Phase.Refusal) return this.readRefusal(true);
    if (this.phase === Phase.Handshake) return this.fail(upstreamFailure('ECONNRESET', 'the backend closed the connection during the upgrade'));
    if (this.phase === Phase.Open) this.reportClose(1006, Buffer.alloc(0));
  }
}
