import { DurableObject } from "cloudflare:workers";
import { readConfig } from "../config";
import { generateSigningSecret } from "./signing-secret";
import { checkWebhookUrl } from "./webhook-url";

/**
 * One Durable Object per org (`idFromName(org_id)`) owns the org's delivery settings:
 * its default webhook URL and its signing secrets. Nothing else stores them, so a
 * rotation is seen by the very next delivery, and no D1 query can ever leak a secret.
 *
 * Storage schema (SQLite in the object, one row):
 *
 *   org_settings
 *     id                          1 (a single row)
 *     webhook_url                 the org default, or NULL
 *     signing_secret              the current `whsec_…` secret
 *     secret_rotated_at           unix ms of the last rotation, NULL if never rotated
 *     previous_secret             the secret before the last rotation, or NULL
 *     previous_secret_expires_at  unix ms until which it still signs `webhook-signature`
 *
 * Why a previous secret: Standard Webhooks receivers accept any of several signatures,
 * so during 24 h after a rotation deliveries carry both and receivers can switch over
 * without a gap. `X-Zupertry-Signature` has room for one value and switches at once.
 */

/** What an org sees of its endpoint settings (GET/PUT /v1/webhook). */
export interface WebhookSettings {
  webhook_url: string | null;
  signing_secret: string;
  /** ISO time of the last rotation, or null when the secret was never rotated. */
  secret_rotated_at: string | null;
}

/** What the delivery consumer needs: where to POST, and what to sign with (current first). */
export interface DeliverySettings {
  webhook_url: string | null;
  signing_secrets: string[];
}

export type SetWebhookUrlResult = { ok: true; settings: WebhookSettings } | { ok: false; reason: string };

/** How long the secret before a rotation keeps signing `webhook-signature`. */
export const PREVIOUS_SECRET_GRACE_MS = 24 * 60 * 60 * 1000;

interface SettingsRow extends Record<string, SqlStorageValue> {
  webhook_url: string | null;
  signing_secret: string;
  secret_rotated_at: number | null;
  previous_secret: string | null;
  previous_secret_expires_at: number | null;
}

export class OrgSettings extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS org_settings (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      webhook_url TEXT,
      signing_secret TEXT NOT NULL,
      secret_rotated_at INTEGER,
      previous_secret TEXT,
      previous_secret_expires_at INTEGER
    )`);
  }

  /** The org's settings; the first call creates its signing secret. */
  getWebhook(): WebhookSettings {
    return present(this.row());
  }

  /** Sets (or, with null, clears) the org default URL after checking the URL rules. */
  setWebhookUrl(webhookUrl: string | null): SetWebhookUrlResult {
    if (webhookUrl !== null) {
      const check = checkWebhookUrl(webhookUrl, { allowInsecure: readConfig(this.env).allowInsecureWebhookUrls });
      if (!check.ok) return check;
    }
    const row = this.row();
    this.sql.exec("UPDATE org_settings SET webhook_url = ? WHERE id = 1", webhookUrl);
    return { ok: true, settings: present({ ...row, webhook_url: webhookUrl }) };
  }

  /** Replaces the current secret; the old one keeps signing `webhook-signature` for 24 h. */
  rotateSecret(): WebhookSettings {
    const row = this.row();
    const now = Date.now();
    const next: SettingsRow = {
      ...row,
      signing_secret: generateSigningSecret(),
      secret_rotated_at: now,
      previous_secret: row.signing_secret,
      previous_secret_expires_at: now + PREVIOUS_SECRET_GRACE_MS,
    };
    this.sql.exec(
      `UPDATE org_settings SET signing_secret = ?, secret_rotated_at = ?, previous_secret = ?,
         previous_secret_expires_at = ? WHERE id = 1`,
      next.signing_secret,
      next.secret_rotated_at,
      next.previous_secret,
      next.previous_secret_expires_at,
    );
    return present(next);
  }

  /** Read by the consumer once per org per queue batch. */
  getDeliverySettings(): DeliverySettings {
    const row = this.row();
    const secrets = [row.signing_secret];
    if (row.previous_secret !== null && (row.previous_secret_expires_at ?? 0) > Date.now()) {
      secrets.push(row.previous_secret);
    }
    return { webhook_url: row.webhook_url, signing_secrets: secrets };
  }

  private row(): SettingsRow {
    const existing = this.sql.exec<SettingsRow>("SELECT * FROM org_settings WHERE id = 1").toArray()[0];
    if (existing) return existing;
    const created: SettingsRow = {
      webhook_url: null,
      signing_secret: generateSigningSecret(),
      secret_rotated_at: null,
      previous_secret: null,
      previous_secret_expires_at: null,
    };
    this.sql.exec("INSERT INTO org_settings (id, signing_secret) VALUES (1, ?)", created.signing_secret);
    return created;
  }
}

function present(row: SettingsRow): WebhookSettings {
  return {
    webhook_url: row.webhook_url,
    signing_secret: row.signing_secret,
    secret_rotated_at: row.secret_rotated_at === null ? null : new Date(row.secret_rotated_at).toISOString(),
  };
}

/** The settings object of one org. */
export function orgSettings(env: Pick<Env, "ORG_SETTINGS">, orgId: string): DurableObjectStub<OrgSettings> {
  return env.ORG_SETTINGS.get(env.ORG_SETTINGS.idFromName(orgId));
}
