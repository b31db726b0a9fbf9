/**
 * JSON that arrives as it was sent.
 *
 * `data` is delivered as the producer sent it, so ingest must not change it silently:
 * `12345678901234567890` would leave as `12345678901234567000` and `1e400` as `null`
 * (a JS number is a 64-bit double). Such numbers are refused, naming the field, and the
 * producer can send them as strings. `JSON.parse`'s reviver sees each number's source
 * text (`context.source`), so the check is exact: a number passes when the double it
 * parses to, written back out, has the same decimal value (`1.0` and `1` do; `1e2`
 * and `100` do; `0.1` does).
 *
 * Depth is limited too: nothing stored may nest so deep that reading it back (or
 * serialising it) runs out of stack.
 */

/** How deep `data` may nest (objects and arrays), including `data` itself. */
export const MAX_DATA_DEPTH = 32;

export type JsonPath = Array<string | number>;

/** A number that would not arrive as sent. */
export interface InexactNumber {
  path: JsonPath;
  literal: string;
}

const INEXACT = Symbol("inexact number");

/**
 * Sixteen digits or more (a double keeps 15 for sure; a decimal point may split them, as
 * in `12345678.123456789`), or exponents large enough: a number that might lose its value.
 */
const MIGHT_BE_INEXACT = /(?:\d\.?){16}|[eE][+-]?\d{3}/;

/** Valid JSON that nests too deep to be read through (thousands of levels). */
export class TooDeepJson extends Error {
  override name = "TooDeepJson";
}

/**
 * Parses like `JSON.parse` (throws `SyntaxError` the same way, or `TooDeepJson`) and lists the numbers
 * whose value would change, with where they are. Bodies without 16 digits in a row (a
 * decimal point among them allowed) or a 3-digit exponent cannot hold one and skip the
 * reviver (the hot path).
 */
export function parseExactJson(text: string): { value: unknown; inexact: InexactNumber[] } {
  if (!MIGHT_BE_INEXACT.test(text)) return { value: JSON.parse(text), inexact: [] };
  const literals = new Map<object, string>();
  const parse = (source: string) =>
    JSON.parse(source, (_key, v: unknown, context?: { source?: string }) => {
      if (typeof v !== "number" || context?.source === undefined || sameNumber(context.source, v)) return v;
      const mark = { [INEXACT]: true };
      literals.set(mark, context.source);
      return mark;
    });
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    // The parser is iterative but the reviver pass recurses: thousands of levels overflow
    // the stack. What lies deeper than any route takes is cut to `[]` (still too deep,
    // so its event is refused for its depth, on its own in a batch) and the rest is
    // checked as usual: one such event does not fail its neighbours.
    literals.clear();
    try {
      value = parse(capNesting(text, CAPPED_DEPTH));
    } catch (again) {
      if (again instanceof RangeError) throw new TooDeepJson();
      throw again;
    }
  }
  if (literals.size === 0) return { value, inexact: [] };
  const inexact: InexactNumber[] = [];
  for (const [node, path] of walk(value)) {
    const literal = typeof node === "object" && node !== null ? literals.get(node) : undefined;
    if (literal !== undefined) inexact.push({ path, literal });
  }
  return { value, inexact };
}

/**
 * Where `capNesting` cuts: deeper than any route takes (`data`'s 32 levels, inside a
 * batch's three), shallow enough for the reviver's recursion.
 */
const CAPPED_DEPTH = 64;

/**
 * Valid JSON `text` with every array or object that opens deeper than `depth` written
 * as `[]` (iterative: one pass over the text, strings skipped). The result still nests
 * `depth` levels where the text nested more.
 */
export function capNesting(text: string, depth: number): string {
  let out = "";
  let level = 0;
  let from = 0; // text from here on is copied as it is
  let cutAt = -1; // while cutting: the level the cut subtree opened at
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "[" || ch === "{") {
      level++;
      if (level > depth && cutAt === -1) {
        out += `${text.slice(from, i)}[]`;
        cutAt = level;
      }
    } else if (ch === "]" || ch === "}") {
      if (level === cutAt) {
        cutAt = -1;
        from = i + 1;
      }
      level--;
    }
  }
  return cutAt === -1 ? out + text.slice(from) : out;
}

/** Objects and arrays nest deeper than `limit` (iterative: no recursion to overflow). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== "object" || node === null) continue;
    if (depth > limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/** Every value with its path, depth first, in the order `JSON.parse` keeps (iterative). */
function* walk(value: unknown): Generator<[unknown, JsonPath]> {
  const stack: Array<[unknown, JsonPath]> = [[value, []]];
  while (stack.length > 0) {
    const [node, path] = stack.pop()!;
    yield [node, path];
    if (typeof node !== "object" || node === null || INEXACT in node) continue;
    const children: Array<[unknown, JsonPath]> = Array.isArray(node)
      ? node.map((child, i) => [child, [...path, i]])
      : Object.entries(node).map(([key, child]) => [child, [...path, key]]);
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!);
  }
}

/** Whether the JSON number literal `source` and the double `value` are the same number. */
export function sameNumber(source: string, value: number): boolean {
  if (!Number.isFinite(value)) return false;
  const a = decimal(source);
  const b = decimal(String(value));
  return (
    a !== null &&
    b !== null &&
    a.digits === b.digits &&
    a.exponent === b.exponent &&
    (a.digits === "" || a.negative === b.negative)
  );
}

/** A decimal literal as sign, significant digits and exponent: value = digits × 10^exponent. */
function decimal(text: string): { negative: boolean; digits: string; exponent: number } | null {
  const match = /^(-)?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return null;
  const [, sign, whole, fraction = "", exp = "0"] = match;
  let digits = (whole! + fraction).replace(/^0+/, "");
  let exponent = Number(exp) - fraction.length;
  const trailing = digits.length - digits.replace(/0+$/, "").length;
  digits = digits.slice(0, digits.length - trailing);
  exponent += trailing;
  return { negative: sign === "-", digits, exponent: digits === "" ? 0 : exponent };
}
