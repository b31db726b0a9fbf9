import { describe, expect, it } from "vitest";
import { checkWebhookUrl } from "../../src/org/webhook-url";

const strict = { allowInsecure: false };
const local = { allowInsecure: true };

describe("webhook URL rules", () => {
  it.each([
    "https://your-app.com/webhooks/zupertry",
    "https://abc123.ngrok.io/hook?x=1",
    "https://8.8.8.8/hook",
    "https://[2606:4700:4700::1111]/hook",
    "https://example.com:8443/",
  ])("accepts the public https URL %s", (url) => {
    expect(checkWebhookUrl(url, strict)).toEqual({ ok: true });
  });

  it.each([
    ["http://your-app.com/hook", "https://"],
    ["ftp://your-app.com/hook", "https://"],
    ["javascript:alert(1)", "https://"],
    ["file:///etc/passwd", "https://"],
    ["not a url", "absolute URL"],
    ["/relative/path", "absolute URL"],
    ["https://user:pass@your-app.com/hook", "user info"],
    ["https://user@your-app.com/hook", "user info"],
    [`https://your-app.com/${"a".repeat(2030)}`, "2048"],
    ["https://localhost/hook", "loopback"],
    ["https://localhost./hook", "loopback"],
    ["https://LOCALHOST/hook", "loopback"],
    ["https://api.localhost/hook", "loopback"],
    ["https://127.0.0.1/hook", "loopback"],
    ["https://127.1.2.3/hook", "loopback"],
    ["https://2130706433/hook", "loopback"], // decimal 127.0.0.1
    ["https://0177.0.0.1/hook", "loopback"], // octal
    ["https://0x7f.0.0.1/hook", "loopback"], // hex
    ["https://0x7f000001/hook", "loopback"],
    ["https://[::1]/hook", "loopback"],
    ["https://[::ffff:127.0.0.1]/hook", "loopback"],
    ["https://0.0.0.0/hook", "private"],
    ["https://0/hook", "private"],
    ["https://10.0.0.1/hook", "private"],
    ["https://172.16.5.4/hook", "private"],
    ["https://172.31.255.255/hook", "private"],
    ["https://192.168.1.1/hook", "private"],
    ["https://169.254.169.254/latest/meta-data", "private"],
    ["https://100.64.0.1/hook", "private"],
    ["https://100.127.255.254/hook", "private"],
    ["https://224.0.0.1/hook", "private"],
    ["https://255.255.255.255/hook", "private"],
    ["https://[::]/hook", "private"],
    ["https://[fc00::1]/hook", "private"],
    ["https://[fd12:3456::1]/hook", "private"],
    ["https://[fe80::1]/hook", "private"],
    ["https://[febf::1]/hook", "private"],
    ["https://[::ffff:10.0.0.1]/hook", "private"],
    ["https://[::ffff:a9fe:a9fe]/hook", "private"], // ::ffff:169.254.169.254
    ["https://[64:ff9b::a00:1]/hook", "private"], // NAT64 of 10.0.0.1
    ["https://[64:ff9b:1::a00:1]/hook", "private"], // local-use NAT64
    ["https://[::ffff:0:7f00:1]/hook", "loopback"], // IPv4-translated 127.0.0.1
    ["https://[::ffff:0:a9fe:a9fe]/hook", "private"], // IPv4-translated 169.254.169.254
    ["https://[2002:a00:1::]/hook", "private"], // 6to4 of 10.0.0.1
    ["https://[ff02::1]/hook", "private"],
    ["https://intranet/hook", "public host"],
    ["https://intranet./hook", "public host"],
    ["https://printer.local/hook", "public host"],
    ["https://billing.corp.internal/hook", "public host"],
    ["https://nas.home.arpa/hook", "public host"],
    ["https://your-app.com:0/hook", "port 0"],
  ])("refuses %s (%s)", (url, reason) => {
    const result = checkWebhookUrl(url, strict);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain(reason);
  });

  it("keeps public neighbours of private ranges", () => {
    for (const url of [
      "https://172.32.0.1/",
      "https://100.128.0.1/",
      "https://11.0.0.1/",
      "https://169.255.0.1/",
      "https://[fe00::1]/",
    ]) {
      expect(checkWebhookUrl(url, strict), url).toEqual({ ok: true });
    }
  });

  it("with ALLOW_INSECURE_WEBHOOK_URLS allows http:// and loopback only", () => {
    for (const url of [
      "http://127.0.0.1:3000/hook",
      "http://localhost:8080/",
      "http://[::1]:9000/",
      "https://localhost/",
    ]) {
      expect(checkWebhookUrl(url, local), url).toEqual({ ok: true });
    }
    for (const url of [
      "http://10.0.0.1/",
      "http://169.254.169.254/",
      "http://192.168.0.10/",
      "http://[fd00::1]/",
      "http://100.64.0.1/",
      "ftp://127.0.0.1/",
    ]) {
      expect(checkWebhookUrl(url, local).ok, url).toBe(false);
    }
  });
});
