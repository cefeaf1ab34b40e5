// allow / deny lists of client addresses (CIDR, IPv4 and IPv6) for a route.

import ipaddr from 'ipaddr.js';

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class AccessList {
  private readonly allow: Range[] | undefined;
  private readonly deny: Range[];

  /** CIDRs are validated by the config schema; a bare address means that one address. */
  constructor(allow: string[] | undefined, deny: string[] | undefined) {
    this.allow = allow?.map(parseRange);
    this.deny = (deny ?? []).map(parseRange);
  }

  /** A denied address is refused; when there is an allow list, only addresses on it pass. */
  permits(address: string): boolean {
    let parsed: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      parsed = ipaddr.process(address);
    } catch {
      return false;
    }
    if (this.deny.some((range) => inRange(parsed, range))) return false;
    return this.allow === undefined || this.allow.some((range) => inRange(parsed, range));
  }
}

function inRange(address: ipaddr.IPv4 | ipaddr.IPv6, range: Range): boolean {
  return address.kind() === range[0].kind() && address.match(range as [typeof address, number]);
}

export function parseRange(text: string): Range {
  if (text.includes('/')) return ipaddr.parseCIDR(text);
  const address = ipaddr.process(text);
  return [address, address.kind() === 'ipv4' ? 32 : 128];
}

/** Whether `text` is an address or CIDR range (for config validation). */
export function isRange(text: string): boolean {
  try {
    parseRange(text);
    return true;
  } catch {
    return false;
  }
}
