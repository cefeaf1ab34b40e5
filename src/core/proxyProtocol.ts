// PROXY protocol v1 (text) and v2 (binary) headers: written to backends of TCP listeners, and read
// from clients when fairway sits behind an L4 balancer. Spec: haproxy.org/download/2.6/doc/proxy-protocol.txt

import { isIPv4, isIPv6 } from 'node:net';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A v1 line is at most 107 bytes including CRLF. */
const V1_MAX = 107;

export interface ProxyAddresses {
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

/** IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) as plain IPv4, as the header wants them. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export function encodeProxyHeader(version: 1 | 2, addresses: ProxyAddresses): Buffer {
  const source = plain(addresses.source);
  const destination = plain(addresses.destination);
  const v4 = isIPv4(source) && isIPv4(destination);
  const v6 = isIPv6(source) && isIPv6(destination);
  if (version === 1) {
    if (!v4 && !v6) return Buffer.from('PROXY UNKNOWN\r\n');
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${source} ${destination} ${addresses.sourcePort} ${addresses.destinationPort}\r\n`);
  }
  if (!v4 && !v6) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const size = v4 ? 4 : 16;
  const body = Buffer.alloc(size * 2 + 4);
  writeAddress(body, 0, source, v4);
  writeAddress(body, size, destination, v4);
  body.writeUInt16BE(addresses.sourcePort, size * 2);
  body.writeUInt16BE(addresses.destinationPort, size * 2 + 2);
  const head = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

function writeAddress(target: Buffer, at: number, address: string, v4: boolean): void {
  if (v4) {
    address.split('.').forEach((octet, i) => target.writeUInt8(Number(octet), at + i));
    return;
  }
  // Expand "::" to the missing groups of zeros, then write eight 16-bit groups.
  const [left, right = ''] = address.split('::');
  const head = left ? left.split(':') : [];
  const tail = address.includes('::') ? (right ? right.split(':') : []) : [];
  const groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  groups.forEach((group, i) => target.writeUInt16BE(parseInt(group, 16), at + i * 2));
}

export type ParsedProxyHeader =
  | { kind: 'complete'; length: number; addresses?: ProxyAddresses }
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string };

/**
 * Reads a PROXY header (v1 or v2) at the start of `data`. `addresses` is absent for a LOCAL or
 * UNKNOWN header (the connection is the proxy's own, e.g. a health check).
 */
export function parseProxyHeader(data: Buffer): ParsedProxyHeader {
  if (data.length === 0) return { kind: 'incomplete' };
  if (data[0] === 0x0d) return parseV2(data);
  if (data[0] !== 0x50 /* P */) return { kind: 'invalid', reason: 'no PROXY header' };
  const end = data.indexOf('\r\n');
  if (end < 0) return data.length >= V1_MAX ? { kind: 'invalid', reason: 'PROXY v1 line too long' } : { kind: 'incomplete' };
  const parts = data.subarray(0, end).toString('latin1').split(' ');
  if (parts[0] !== 'PROXY') return { kind: 'invalid', reason: 'no PROXY header' };
  if (parts[1] === 'UNKNOWN') return { kind: 'complete', length: end + 2 };
  const [, family, source, destination, sourcePort, destinationPort] = parts;
  const valid = (family === 'TCP4' && isIPv4(source) && isIPv4(destination)) || (family === 'TCP6' && isIPv6(source) && isIPv6(destination));
  const port = (text: string) => (/^\d{1,5}$/.test(text) && Number(text) <= 65535 ? Number(text) : -1);
  if (parts.length !== 6 || !valid || port(sourcePort) < 0 || port(destinationPort) < 0) return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  return { kind: 'complete', length: end + 2, addresses: { source, sourcePort: port(sourcePort), destination, destinationPort: port(destinationPort) } };
}

function parseV2(data: Buffer): ParsedProxyHeader {
  const known = Math.min(data.length, V2_SIGNATURE.length);
  if (!data.subarray(0, known).equals(V2_SIGNATURE.subarray(0, known))) return { kind: 'invalid', reason: 'no PROXY header' };
  if (data.length < 16) return { kind: 'incomplete' };
  const versionCommand = data[12];
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: 'unknown PROXY protocol version' };
  const length = 16 + data.readUInt16BE(14);
  if (data.length < length) return { kind: 'incomplete' };
  const family = data[13] >> 4;
  // LOCAL command, or a family without addresses we use: the connection keeps its peer.
  if ((versionCommand & 0x0f) === 0 || (family !== 1 && family !== 2)) return { kind: 'complete', length };
  const size = family === 1 ? 4 : 16;
  if (length - 16 < size * 2 + 4) return { kind: 'invalid', reason: 'PROXY v2 address block too short' };
  const read = (at: number) => (family === 1 ? [...data.subarray(at, at + 4)].join('.') : readV6(data, at));
  return {
    kind: 'complete',
    length,
    addresses: {
      source: read(16),
      destination: read(16 + size),
      sourcePort: data.readUInt16BE(16 + size * 2),
      destinationPort: data.readUInt16BE(16 + size * 2 + 2),
    },
  };
}

function readV6(data: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(data.readUInt16BE(at + i * 2).toString(16));
  return groups.join(':');
}
