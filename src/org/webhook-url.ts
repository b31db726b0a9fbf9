/**
 * Which webhook URLs the dispatcher will POST to.
 *
 * A webhook URL is chosen by a customer (or by the producer on their behalf), so it
 * is untrusted input that makes this Worker send requests: the classic SSRF shape.
 * The rules are checked when a URL is set (org default or per event) and again
 * before every attempt, because the rules (ALLOW_INSECURE_WEBHOOK_URLS) can change
 * between the two.
 *
 * IP literals are judged after WHATWG URL parsing, which already normalises the
 * tricky spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `[::ffff:7f00:1]`) to one
 * canonical form, so there is one place to classify them. Names are not resolved:
 * a Worker's `fetch` leaves from Cloudflare's network, where private and loopback
 * addresses behind a public name are not reachable.
 */

export const MAX_WEBHOOK_URL_LENGTH = 2048;

export interface WebhookUrlRules {
  /** Allows `http://` and loopback (127.0.0.0/8, ::1, localhost); nothing else private. */
  readonly allowInsecure: boolean;
}

export type WebhookUrlCheck = { ok: true } | { ok: false; reason: string };

export function checkWebhookUrl(input: string, rules: WebhookUrlRules): WebhookUrlCheck {
  if (input.length > MAX_WEBHOOK_URL_LENGTH) {
    return refuse(`must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return refuse("is not an absolute URL");
  }
  if (url.protocol !== "https:" && !(rules.allowInsecure && url.protocol === "http:")) {
    return refuse(rules.allowInsecure ? "must use https:// or http://" : "must use https://");
  }
  if (url.username !== "" || url.password !== "") {
    return refuse("must not contain user info");
  }
  const host = classifyHost(url.hostname);
  if (host === "loopback" && !rules.allowInsecure) {
    return refuse("must not point to localhost or a loopback address");
  }
  if (host === "private") {
    return refuse("must not point to a private, link-local or reserved address");
  }
  // A name public DNS cannot answer would only fail at every attempt; refused where it is set.
  if (host === "public" && !rules.allowInsecure && isLocalName(url.hostname)) {
    return refuse("must name a public host (not a single-label or .local, .internal or .home.arpa name)");
  }
  if (url.port === "0") return refuse("must not use port 0");
  return { ok: true };
}

/**
 * A host name that only a local network resolves: one label (`intranet`), or a name under
 * a special-use suffix (mDNS's `.local`, `.home.arpa`, ICANN's private-use `.internal`).
 * Public IP literals are not names: IPv4 ones have dots, IPv6 ones brackets.
 */
function isLocalName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.+$/, "");
  if (name.startsWith("[")) return false; // an IPv6 literal
  return !name.includes(".") || /\.(local|internal|home\.arpa)$/.test(name);
}

function refuse(reason: string): WebhookUrlCheck {
  return { ok: false, reason: `webhook_url ${reason}` };
}

type HostClass = "public" | "loopback" | "private";

/** Classifies a WHATWG-normalised hostname (IPv6 literals keep their brackets). */
export function classifyHost(hostname: string): HostClass {
  const name = hostname.toLowerCase().replace(/\.+$/, "");
  if (name === "") return "private";
  if (name === "localhost" || name.endsWith(".localhost")) return "loopback";
  if (name.startsWith("[")) {
    const ipv6 = parseIPv6(name.slice(1, -1));
    return ipv6 ? classifyIPv6(ipv6) : "private";
  }
  const ipv4 = parseIPv4(name);
  return ipv4 === null ? "public" : classifyIPv4(ipv4);
}

/** IPv4 ranges that are not global unicast: [network, prefix length, class]. */
const IPV4_RANGES: ReadonlyArray<readonly [string, number, HostClass]> = [
  ["127.0.0.0", 8, "loopback"],
  ["0.0.0.0", 8, "private"], // "this network", 0.0.0.0 reaches the local host
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "private"], // CGNAT
  ["169.254.0.0", 16, "private"], // link-local, cloud metadata (169.254.169.254)
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "private"], // IETF protocol assignments
  ["192.0.2.0", 24, "private"], // TEST-NET-1
  ["192.88.99.0", 24, "private"], // 6to4 relay anycast
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "private"], // benchmarking
  ["198.51.100.0", 24, "private"], // TEST-NET-2
  ["203.0.113.0", 24, "private"], // TEST-NET-3
  ["224.0.0.0", 4, "private"], // multicast
  ["240.0.0.0", 4, "private"], // reserved, broadcast
];

function classifyIPv4(address: number): HostClass {
  for (const [net, bits, cls] of IPV4_RANGES) {
    const mask = (~0 << (32 - bits)) >>> 0;
    if ((address & mask) >>> 0 === parseIPv4(net)) return cls;
  }
  return "public";
}

/** Dotted-quad only: the URL parser has already rewritten every other IPv4 spelling. */
function parseIPv4(text: string): number | null {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

/** Eight 16-bit groups, or null. Accepts the compressed and dotted forms. */
function parseIPv6(text: string): number[] | null {
  let head = text;
  const groups: number[] = [];
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(head);
  let tail: number[] = [];
  if (dotted) {
    const v4 = parseIPv4(dotted[2]!);
    if (v4 === null) return null;
    head = dotted[1]!.endsWith("::") ? dotted[1]! : dotted[1]!.slice(0, -1);
    tail = [v4 >>> 16, v4 & 0xffff];
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const parse = (s: string) =>
    s === "" ? [] : s.split(":").map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16) : NaN));
  const left = parse(halves[0]!);
  const right = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - tail.length - left.length - right.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
  groups.push(...left, ...Array<number>(halves.length === 2 ? fill : 0).fill(0), ...right, ...tail);
  return groups.some(Number.isNaN) ? null : groups;
}

function classifyIPv6(g: number[]): HostClass {
  const [a, b] = [g[0]!, g[1]!];
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const embeddedV4 = (hi: number, lo: number) => classifyIPv4(((hi << 16) >>> 0) + lo);
  if (zeros(0, 7) && g[7] === 1) return "loopback"; // ::1
  if (zeros(0, 5) && g[5] === 0xffff) return embeddedV4(g[6]!, g[7]!); // ::ffff:a.b.c.d
  if (zeros(0, 4) && g[4] === 0xffff && g[5] === 0) return embeddedV4(g[6]!, g[7]!); // ::ffff:0:a.b.c.d
  if (zeros(0, 6)) return "private"; // ::, ::a.b.c.d (deprecated IPv4-compatible)
  if (a === 0x64 && b === 0xff9b && zeros(2, 6)) return embeddedV4(g[6]!, g[7]!); // NAT64 64:ff9b::/96
  if (a === 0x64 && b === 0xff9b && g[2] === 1) return "private"; // local-use NAT64 64:ff9b:1::/48
  if (a === 0x2002) return embeddedV4(b, g[2]!); // 6to4 2002:AABB:CCDD::
  if (a === 0x2001 && b === 0) return "private"; // Teredo
  if (a === 0x2001 && b === 0xdb8) return "private"; // documentation
  if ((a & 0xfe00) === 0xfc00) return "private"; // unique local fc00::/7
  if ((a & 0xffc0) === 0xfe80) return "private"; // link-local fe80::/10
  if ((a & 0xffc0) === 0xfec0) return "private"; // site-local (deprecated)
  if ((a & 0xff00) === 0xff00) return "private"; // multicast
  return "public";
}
