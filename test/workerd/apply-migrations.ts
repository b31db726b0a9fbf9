import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { allLogShards } from "../../src/store/shards";

// Storage is isolated per test file; each file starts from the migrated schema, in
// every database (DB, which holds the API keys, is one of the log shards).
await Promise.all(allLogShards(env).map(({ db }) => applyD1Migrations(db, env.TEST_MIGRATIONS)));
