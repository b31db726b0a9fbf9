/** The programmable receiver's script and record (test/support/receiver.ts), shared with workerd tests. */

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Send this many bytes of "x" as the body instead of `body`. */
  bodyBytes?: number;
  /** Wait before sending the status line (a hang when longer than the timeout). */
  delayMs?: number;
  /** Send the headers at once, then the body in `chunks` pieces, `trickleMs` apart. */
  trickleMs?: number;
  chunks?: number;
  /** Reset the connection instead of answering (after `delayMs`, if any). */
  reset?: boolean;
}

export interface Scenario {
  /** The n-th request gets replies[n]; later ones get the last reply. */
  replies?: Reply[];
  /** Answer 500 to this share (0..1) of first attempts (`X-Zupertry-Attempt: 1`). */
  failFirstAttempts?: number;
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** The raw body, base64. */
  body: string;
  received_at: number;
  /** Requests to the same hook being answered when this one arrived (itself included). */
  in_flight: number;
  /** The status it was answered with. */
  status: number;
}
