"""moto's DynamoDB-compatible server, as monotone's tests use it.

Started by scripts/moto.sh (and by the tests that need a server of their
own) with the virtualenv's Python, never directly by a user. It differs from
`moto_server` in three ways, each needed by the tests:

- It listens on 127.0.0.1 only, on a port the OS picks (or --port), and
  writes that port to --port-file once it accepts connections, so callers
  need neither guess a free port nor poll a log.
- It handles one DynamoDB request at a time. moto's threaded server checks
  a ConditionExpression and applies the write in separate Python steps that
  another request's thread can run between, so two conditional writes can
  both succeed; DynamoDB never allows that, and monotone's contention tests
  check exactly that guarantee.
- Faults can be injected per table: a POST to /_monotone/faults with a JSON
  body {"table": T, "code": C, "count": N, "operation": O?, "status": S?}
  makes the next N DynamoDB requests on table T (only those of operation O,
  e.g. "CreateTable", if given) fail with error code C and HTTP status S
  (default 400), without reaching moto. With "body": B instead of "code",
  they are answered with the JSON document B (and status S, default 200).
  Tests inject throttling, access denied, condition failures that carry no
  item, and a table that is still CREATING this way; faults are scoped to a
  table so tests running in parallel on one server do not see each other's.
"""

import argparse
import io
import json
import os
import signal
import sys
import threading

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

FAULTS_PATH = "/_monotone/faults"


class Monotone:
    """WSGI middleware: one request at a time into moto, plus faults."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.faults = []  # dicts: table, code, count, operation, status

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("PATH_INFO") == FAULTS_PATH:
            return self.add_fault(body, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_"):
            fault = self.take_fault(target.split(".")[-1], body)
            if fault is not None:
                return self.fail(fault, start_response)
        with self.lock:
            # Run moto and read its whole response under the lock.
            chunks = []
            result = self.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            return chunks

    def add_fault(self, body, start_response):
        try:
            fault = json.loads(body)
            answer = fault.get("body")
            fault = {
                "table": str(fault["table"]),
                "code": None if answer is not None else str(fault["code"]),
                "body": answer,
                "count": int(fault.get("count", 1)),
                "operation": fault.get("operation"),
                "status": int(fault.get("status", 400 if answer is None else 200)),
            }
        except (ValueError, KeyError, TypeError) as e:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"bad fault: {e}\n".encode()]
        with self.lock:
            self.faults.append(fault)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def take_fault(self, operation, body):
        try:
            table = json.loads(body or b"{}").get("TableName")
        except ValueError:
            return None
        with self.lock:
            for fault in self.faults:
                if fault["table"] != table or fault["count"] <= 0:
                    continue
                if fault["operation"] not in (None, operation):
                    continue
                fault["count"] -= 1
                return dict(fault)
        return None

    def fail(self, fault, start_response):
        if fault["body"] is not None:
            payload = json.dumps(fault["body"]).encode()
        else:
            payload = json.dumps(
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#" + fault["code"],
                    "message": "injected by monotone's test server",
                }
            ).encode()
        status = fault["status"]
        reason = {200: "OK", 400: "Bad Request"}.get(status, "Error")
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Content-Length", str(len(payload))),
                ("x-amzn-RequestId", "monotone-injected-fault"),
            ],
        )
        return [payload]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: let the OS pick")
    parser.add_argument("--port-file", help="write the port here once listening")
    args = parser.parse_args()

    app = Monotone(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_port
    os.environ.setdefault("MOTO_PORT", str(port))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"moto listening on http://127.0.0.1:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
