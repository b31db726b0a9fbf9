#!/usr/bin/env node
// The API reference (/docs) is Swagger UI from the pinned `swagger-ui-dist` package,
// served as the Worker's own static assets: no CDN, no third-party script, works offline.
// `npm ci` / `npm install` run this (postinstall) so public/docs/vendor/ always matches
// package-lock.json; the folder is not committed.
import { copyFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
const target = join(root, "public/docs/vendor");
mkdirSync(target, { recursive: true });
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"])
  copyFileSync(join(dist, file), join(target, file));
