import { z } from "@hono/zod-openapi";
import { EVENT_TYPES } from "../delivery/message";

/**
 * The identifiers clients see and send back: what the job service issues (job and org
 * ids), and the ids this API makes (deliveries, attempts). Every router validates them
 * with these schemas.
 */

/** Ids the job service issues (`job_abc123`, `org_def456`, UUIDs). */
export const IdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, "1-128 characters: letters, digits and . _ : - (not first)");

export const DeliveryIdSchema = z.string().regex(/^dlv_[0-9a-f]{32}$/, "a delivery id: dlv_ and 32 hex digits");

/** `att_<delivery hash>_<n>`: names an attempt without an extra index. */
export function attemptId(deliveryId: string, attempt: number): string {
  return `att_${deliveryId.slice("dlv_".length)}_${attempt}`;
}

export function parseAttemptId(id: string): { delivery_id: string; attempt: number } | null {
  const match = /^att_([0-9a-f]{32})_([1-9][0-9]{0,5})$/.exec(id);
  return match ? { delivery_id: `dlv_${match[1]}`, attempt: Number(match[2]) } : null;
}

/** The event types (a filter, a test event's choice). */
export const EventTypeSchema = z.enum(EVENT_TYPES);
