import { deliveryIdsForJob } from "../delivery/message";

/**
 * The deliveries a `job_id` and/or `delivery_id` filter leaves, or undefined for no
 * filter. A job's delivery ids are computed (a hash of org, type and job), not looked up.
 */
export async function deliveryFilter(
  orgId: string,
  jobId?: string,
  deliveryId?: string,
): Promise<string[] | undefined> {
  if (jobId === undefined) return deliveryId === undefined ? undefined : [deliveryId];
  const ofJob = await deliveryIdsForJob(orgId, jobId);
  return deliveryId === undefined ? ofJob : ofJob.filter((id) => id === deliveryId);
}
