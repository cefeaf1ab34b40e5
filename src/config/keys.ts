// Every key the config accepts, by where it sits.

/**
 * Every key the config accepts, by where it sits ("NAME" is a pool name, "[]" a list item). The
 * validators take their allowed keys from here, and a test checks that docs/configuration.md
 * describes each one, so the reference cannot fall behind the schema.
 */
const BUCKET_KEYS = ['rate', 'burst'] as const;
const HEADER_EDIT_KEYS = ['set', 'remove'] as const;
export const CONFIG_KEYS = {
  '': ['listen', 'tls', 'workers', 'engine', 'log', 'timeouts', 'limits', 'websocket', 'shutdown', 'admin', 'fleet', 'resolver', 'pools', 'routes', 'trusted_proxies', 'proxy_protocol', 'tcp'],
  tls: ['cert', 'key', 'certs', 'redirect'],
  'tls.certs[]': ['names', 'cert', 'key'],
  log: ['level', 'access', 'format'],
  timeouts: ['connect', 'response', 'idle', 'request_head', 'request_body'],
  limits: ['max_request_line', 'max_request_head'],
  websocket: ['max_message', 'ping_interval', 'max_buffered', 'compression'],
  shutdown: ['grace'],
  admin: ['listen', 'token', 'hosts'],
  resolver: ['servers', 'timeout'],
  fleet: ['redis', 'name', 'heartbeat', 'sync', 'timeout', 'exact_sessions'],
  'pools.NAME': ['algorithm', 'backends', 'hash', 'least_time', 'slow_start', 'sticky', 'queue', 'health', 'outlier', 'retries', 'drain', 'rebalance', 'tls'],
  'pools.NAME.backends[]': ['url', 'dns', 'srv', 'port', 'interval', 'weight', 'name', 'max_conns'],
  'pools.NAME.hash': ['key', 'balance_factor'],
  'pools.NAME.least_time': ['decay'],
  'pools.NAME.sticky': ['cookie'],
  'pools.NAME.queue': ['size', 'timeout'],
  'pools.NAME.health': ['type', 'path', 'interval', 'timeout', 'rise', 'fall', 'expect_status', 'expect_body', 'json', 'degraded_weight', 'agent'],
  'pools.NAME.health.json': ['unhealthy', 'degraded'],
  'pools.NAME.health.agent': ['port', 'interval', 'timeout', 'send'],
  'pools.NAME.outlier': ['consecutive_failures', 'consecutive_5xx', 'base_ejection', 'max_ejected_share'],
  'pools.NAME.retries': ['count', 'budget'],
  'pools.NAME.drain': ['timeout', 'window', 'rate', 'code'],
  'pools.NAME.rebalance': ['max_skew', 'rate', 'order'],
  'pools.NAME.tls': ['verify', 'ca', 'server_name'],
  'routes[]': ['match', 'pool', 'allow', 'deny', 'websocket', 'max_body', 'timeouts', 'strip_prefix', 'add_prefix', 'request_headers', 'response_headers', 'rate_limit', 'cache'],
  'routes[].cache': ['size', 'max_object', 'default_ttl', 'lock_timeout', 'key', 'status_header'],
  'routes[].match': ['path', 'host', 'headers', 'method', 'query'],
  'routes[].timeouts': ['response', 'idle'],
  'routes[].request_headers': HEADER_EDIT_KEYS,
  'routes[].response_headers': HEADER_EDIT_KEYS,
  'routes[].rate_limit': ['key', 'scope', 'requests', 'new_sessions', 'concurrent_sessions'],
  'routes[].rate_limit.requests': BUCKET_KEYS,
  'routes[].rate_limit.new_sessions': BUCKET_KEYS,
  'tcp[]': ['listen', 'pool', 'idle_timeout', 'send_proxy', 'accept_proxy'],
} as const satisfies Record<string, readonly string[]>;
