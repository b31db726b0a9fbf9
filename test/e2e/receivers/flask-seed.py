# The seed's Flask receiver (docs "Signature verification", Python (Flask)), run as a
# customer would run it. Between the SEED markers is the docs' code unchanged but for
# its indentation, which the docs' text lost and Python needs back; around it is only
# what the test needs (a port, and a JSON line per answer on stderr, written in one
# call: the snippet's own print() on stdout may interleave across request threads).
import json, sys

# ---- SEED BEGIN ----
import hmac, hashlib, os
from flask import Flask, request, jsonify
app = Flask(__name__)
@app.route('/webhooks/zupertry', methods=['POST'])
def webhook():
    sig = request.headers.get('X-Zupertry-Signature', '')
    secret = os.environ['ZUPERTRY_WEBHOOK_SECRET'].encode()
    expected = hmac.new(secret, request.data, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig, expected):
        return jsonify({'error': 'Invalid signature'}), 401
    event = request.get_json(force=True)
    print(f"Event: {event['type']}", event['data']['job_id'])
    return jsonify({'received': True})
# ---- SEED END ----

@app.after_request
def log_answer(response):
    sys.stderr.write(json.dumps({'status': response.status_code, 'delivery': request.headers.get('X-Zupertry-Delivery'), 'attempt': request.headers.get('X-Zupertry-Attempt')}) + '\n')
    sys.stderr.flush()
    return response

if __name__ == '__main__':
    import logging, sys
    logging.getLogger('werkzeug').setLevel(logging.ERROR)
    port = int(os.environ['PORT'])
    sys.stderr.write(json.dumps({'listening': port}) + '\n')
    sys.stderr.flush()
    app.run(host='127.0.0.1', port=port, threaded=True)
