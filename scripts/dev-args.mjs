// The arguments of `npm run dev`, split into what scripts/dev.mjs uses itself and what
// it passes on to `wrangler dev`. Its own module so that a test can import it.

/**
 * The port (`--port N`, `--port=N`, else PORT, else 8787), the state directory
 * (`--persist-to DIR`, which the migrations need too), and the other arguments.
 * `--port` is taken out: dev.mjs gives wrangler its own `--port`, and wrangler refuses
 * it twice.
 * @param {string[]} args
 * @param {Record<string, string | undefined>} env
 * @returns {{ port: string, persistTo: string | null, rest: string[] } | { error: string }}
 */
export function devArgs(args, env) {
  const rest = [];
  let port = env.PORT || "8787";
  let persistTo = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--port") port = args[++i] ?? "";
    else if (arg.startsWith("--port=")) port = arg.slice("--port=".length);
    else {
      if (arg === "--persist-to") persistTo = args[i + 1] ?? null;
      else if (arg.startsWith("--persist-to=")) persistTo = arg.slice("--persist-to=".length);
      rest.push(arg);
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return { error: `Not a port: "${port}" (give --port 8799 or PORT=8799)` };
  }
  return { port, persistTo, rest };
}
