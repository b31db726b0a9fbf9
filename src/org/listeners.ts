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

/**
 * The delivery frames, in bytes (UTF-8, as sent), a session may leave unanswered before
 * the relay skips it. A listener answers each delivery it is sent. Frames to one that
 * stopped (a stopped process, a client that neither reads nor answers) would otherwise
 * wait in the object's memory without bound: the runtime does not limit a WebSocket's
 * queue (workerd#988), and the object serves the org's deliveries. At most this plus one
 * frame per session: 5 sessions of 4 MiB (about 2,500 deliveries of a typical event each)
 * leave the object room. Once skipped, a session stays so until it owes half of it or
 * less; then it is told how many deliveries it was not sent (`SkippedFrame`), which went
 * to the endpoint as always, and gets them again. (A client that answers what it never
 * read defeats the count; it can only hurt its own org's object.)
 */
export const MAX_OWED_BYTES = 4 * 1024 * 1024;

/** Whether the relay skips a session that owes what its attachment says and `more` bytes. */
export function isSkipped(a: ListenerAttachment, more = 0): boolean {
  return a.skipped > 0 ? a.owedBytes > MAX_OWED_BYTES / 2 : a.owedBytes + more >= MAX_OWED_BYTES;
}

/** What the object keeps with each session: it survives the object's hibernation. */
export interface ListenerAttachment {
  connectedAt: number;
  /** Results this session may still send (above). */
  answersAllowed: number;
  /** Delivery frames sent and not answered yet, and their bytes (as the relay counts them). */
  owedFrames: number;
  owedBytes: number;
  /** Deliveries not relayed to it while it owed MAX_OWED_BYTES, and since when (ms); 0 and null: none. */
  skipped: number;
  skippedSince: number | null;
}

/** A session's attachment; fields it was opened without start empty (the slack for answers). */
export function readAttachment(ws: WebSocket): ListenerAttachment {
  const stored = ws.deserializeAttachment() as Partial<ListenerAttachment> | null;
  return { ...newAttachment(0), ...stored };
}

/** A new session's attachment. */
export function newAttachment(now: number): ListenerAttachment {
  return {
    connectedAt: now,
    answersAllowed: ANSWER_SLACK,
    owedFrames: 0,
    owedBytes: 0,
    skipped: 0,
    skippedSince: null,
  };
}

/**
 * A session's account after `answers` results were kept from it. An answer does not say
 * which frame's bytes it settles, so each settles an equal part of what is owed; all of
 * it once every frame is answered. Once it owes half of MAX_OWED_BYTES or less, the
 * skipped deliveries are told (`told`) and the count starts again.
 */
export function settleAnswers(
  a: ListenerAttachment,
  answers: number,
  now: number,
): { attachment: ListenerAttachment; told: SkippedFrame | null } {
  const settled = Math.min(answers, a.owedFrames);
  const owedFrames = a.owedFrames - settled;
  const owedBytes = owedFrames === 0 ? 0 : Math.round((a.owedBytes * owedFrames) / a.owedFrames);
  const attachment = { ...a, answersAllowed: a.answersAllowed - answers, owedFrames, owedBytes };
  if (a.skipped === 0 || isSkipped(attachment)) return { attachment, told: null };
  const told: SkippedFrame = {
    type: "skipped",
    count: a.skipped,
    since: new Date(a.skippedSince ?? now).toISOString(),
    until: new Date(now).toISOString(),
  };
  return { attachment: { ...attachment, skipped: 0, skippedSince: null }, told };
}

/**
 * Told to a session that caught up: how many deliveries were not relayed to it, and when
 * (the dispatcher's clock), so that it can list them in the log.
 */
export interface SkippedFrame {
  type: "skipped";
  count: number;
  since: string;
  until: string;
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
