// The seed's Express receiver (docs "Signature verification", Node.js), run as a
// customer would run it. Everything between the SEED markers is copied unchanged
// from ../shared/seed/zupertry-webhooks.txt; around it is only what the snippet
// assumes exists (an `app`) and what the test needs (a port, and a line per answer).
const express = require('express');
const app = express();
app.use((req, res, next) => {
  res.on('finish', () => console.log(JSON.stringify({ status: res.statusCode, delivery: req.headers['x-zupertry-delivery'] || null, attempt: req.headers['x-zupertry-attempt'] || null })));
  next();
});

// ---- SEED BEGIN ----
const crypto = require('crypto');
function verifySignature(rawBody, signatureHeader, secret) {
const expected = crypto
.createHmac('sha256', secret)
.update(rawBody) // must be the raw Buffer, not parsed JSON
.digest('hex');
return crypto.timingSafeEqual(
Buffer.from(signatureHeader, 'hex'),
Buffer.from(expected, 'hex')
);
}
// Express example
app.use('/webhooks/zupertry', express.raw({ type: 'application/json' }));
app.post('/webhooks/zupertry', (req, res) => {
const valid = verifySignature(
req.body,
req.headers['x-zupertry-signature'],
process.env.ZUPERTRY_WEBHOOK_SECRET
);
if (!valid) return res.status(401).json({ error: 'Invalid signature' });
const event = JSON.parse(req.body.toString());
// handle event...
res.json({ received: true });
});
// ---- SEED END ----

const server = app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log(JSON.stringify({ listening: server.address().port })));
