import { z } from "zod";

/**
 * `zupertry listen` sessions (cli/): WebSockets held by the org's Durable Object with the
 * hibernation API, so an idle listener costs nothing. What this file decides: what a
 * delivery looks like on the wire, which client frames are taken, and how many sessions
 * an org may hold. The object (src/org/org-settings.ts) does the I/O.
 */

/** Listeners per org: a few developers at once, not a fan-out service. */
export const MAX_LISTENERS = 5;
/** The listener results an org keeps (GET /v1/listen/deliveries). */
export const MAX_LISTENER_RESULTS = 200;
/** A client frame is a small JSON result or a few; anything larger is refused (close 1009). */
export const MAX_CLIENT_FRAME_BYTES = 8192;
/** Results one `results` frame may carry: a listener busy with a burst answers in batches. */
export const MAX_RESULTS_PER_FRAME = 25;
/**
 * Results a session may send beyond the delivery frames relayed to it. Each result is a
 * row written in the object: without a bound, a key holder could write rows as fast as
 * it can send frames. A listener answers each delivery it was sent once, so the frames
 * relayed to a session are its allowance; the slack covers a local test of the CLI.
 */
export const ANSWER_SLACK = 250;
/** The most results a session may owe at once (one that stopped answering stops earning). */
export const MAX_ANSWERS_OWED = 10_000;

/** What the object keeps with each session: it survives the object's hibernation. */
export interface ListenerAttachment {
  connectedAt: number;
  /** Results this session may still send (above). */
  answersAllowed: number;
}

/** A session's attachment; one opened before `answersAllowed` existed starts from the slack. */
export function readAttachment(ws: WebSocket): ListenerAttachment {
  const stored = ws.deserializeAttachment() as Partial<ListenerAttachment> | null;
  return { connectedAt: stored?.connectedAt ?? 0, answersAllowed: stored?.answersAllowed ?? ANSWER_SLACK };
}

/** The key a session was opened with: its tag, so that revoking the key closes it. */
export const KEY_ID_HEADER = "X-Zupertry-Key-Id";

/** A delivery as relayed to listeners: the headers and bytes of the attempt. */
export interface DeliveryFrame {
  type: "delivery";
  delivery_id: string;
  job_id: string;
  event_type: string;
  attempt: number;
  headers: Record<string, string>;
  body: string;
}

/** What a listener answers for each delivery it forwarded. */
const ResultFields = {
  delivery_id: z.string().regex(/^dlv_[0-9a-f]{32}$/),
  attempt: z.number().int().min(1).max(1_000_000),
  job_id: z.string().min(1).max(128),
  event_type: z.enum(["job.completed", "job.failed"]),
  status_code: z.number().int().min(100).max(599).nullable(),
  response_time_ms: z.number().int().min(0).max(3_600_000),
  error: z.string().max(200).nullable(),
};
export const ResultFrame = z.strictObject({ type: z.literal("result"), ...ResultFields });
export type ResultFrame = z.infer<typeof ResultFrame>;
/** Several results in one frame (the CLI sends these): fewer wake-ups of the object in a burst. */
const ResultsFrame = z.strictObject({
  type: z.literal("results"),
  results: z.array(z.strictObject(ResultFields)).min(1).max(MAX_RESULTS_PER_FRAME),
});
export type ListenerAnswer = z.infer<typeof ResultFrame> | z.infer<typeof ResultsFrame>["results"][number];

/** A listener result as the API shows it. */
export interface ListenerResult {
  delivery_id: string;
  attempt: number;
  job_id: string;
  event_type: string;
  /** The key id the listener signed in with. */
  listener_key_id: string;
  status_code: number | null;
  response_time_ms: number;
  error: string | null;
  received_at: string;
}

/** Why a client frame is refused: a close (code and reason), or an error frame and go on. */
export type FrameVerdict =
  | { ok: true; results: ListenerAnswer[] }
  | { ok: false; close: { code: number; reason: string } }
  | { ok: false; error: string };

/** Checks one frame a listener sent (`ping` is answered by the runtime before this). */
export function readClientFrame(message: string | ArrayBuffer): FrameVerdict {
  if (typeof message !== "string") return { ok: false, close: { code: 1003, reason: "text frames only" } };
  if (new TextEncoder().encode(message).byteLength > MAX_CLIENT_FRAME_BYTES) {
    return { ok: false, close: { code: 1009, reason: `frames are at most ${MAX_CLIENT_FRAME_BYTES} bytes` } };
  }
  let json: unknown;
  try {
    json = JSON.parse(message);
  } catch {
    return { ok: false, error: 'not JSON: send {"type": "result", …} for each delivery' };
  }
  const parsed = z.discriminatedUnion("type", [ResultFrame, ResultsFrame]).safeParse(json);
  if (!parsed.success) {
    return { ok: false, error: `not a result frame: ${parsed.error.issues[0]?.path.join(".") || "type"} is wrong` };
  }
  return { ok: true, results: parsed.data.type === "result" ? [parsed.data] : parsed.data.results };
}
