/**
 * The job.completed event exactly as the customer doc shows it ("Payload shape"). The
 * OpenAPI example, the test event, the tests and the bench all start from it, so what
 * they send is what customers read about, and a change to the shape is made once.
 *
 * Pure data, no Worker globals: Node code (the e2e client, the bench) imports it too.
 */

export interface SampleJobData {
  job_id: string;
  workspace_id: string;
  org_id: string;
  status: "completed";
  output_url: string;
  credits_consumed: number;
  created_at: string;
  completed_at: string;
  [field: string]: unknown;
}

/** `data` of a job.completed for `jobId` in `orgId`; `overrides` replaces or adds fields. */
export function sampleJobData(orgId: string, jobId: string, overrides: Partial<SampleJobData> = {}): SampleJobData {
  return {
    job_id: jobId,
    workspace_id: "ws_xyz",
    org_id: orgId,
    status: "completed",
    output_url: `https://storage.googleapis.com/zupertry-outputs/${jobId}.png`,
    credits_consumed: 1,
    created_at: "2026-03-19T10:00:00.000Z",
    completed_at: "2026-03-19T10:00:05.231Z",
    ...overrides,
  };
}

/** `data` of a job.failed, as the customer doc shows it (with the `org_id` routing needs). */
export function sampleJobFailedData(orgId: string, jobId: string) {
  return {
    job_id: jobId,
    org_id: orgId,
    status: "failed" as const,
    error: "Vertex AI returned an unexpected response format",
    credits_consumed: 0,
    created_at: "2026-03-19T10:00:00.000Z",
  };
}

/** The whole event a producer posts to /v1/events: `{type, data}` and any extra fields. */
export function sampleJobCompleted(orgId: string, jobId: string, extra: Record<string, unknown> = {}) {
  return { type: "job.completed" as const, data: sampleJobData(orgId, jobId), ...extra };
}
