// Who the client is when fairway sits behind other proxies: the address its trusted peers report.

import { AccessList } from './accessList.js';

/** How a listener learns the client's address beyond the TCP peer. */
export interface Addressing {
  /** Peers whose X-Forwarded-For is believed; absent = none. */
  trusted?: AccessList;
  /** The listener takes PROXY protocol headers: their source address is the connection's client. */
  proxyProtocol: boolean;
}

export function addressing(trustedProxies: string[], proxyProtocol: boolean): Addressing {
  return { trusted: trustedProxies.length > 0 ? new AccessList(trustedProxies, []) : undefined, proxyProtocol };
}

/**
 * The client address: starting from the connection's peer, each trusted hop is replaced by the
 * address it says it forwarded for, right to left through X-Forwarded-For (what NGINX's
 * real_ip_recursive does). An untrusted address, or the list's end, stops the walk.
 */
export function clientBehind(peer: string, forwardedFor: string, trusted: AccessList | undefined): string {
  if (!trusted || forwardedFor === '' || !trusted.permits(peer)) return peer;
  const hops = forwardedFor.split(',');
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim();
    if (hop === '') continue;
    client = hop;
    if (!trusted.permits(hop)) break;
  }
  return client;
}
