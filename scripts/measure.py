#!/usr/bin/env python3
"""Measures the function binaries: cold start, the notifier's peak RSS on a 1000-record batch,
and the size of each arm64 bootstrap.

    scripts/measure.py                          # builds what it needs, prints every figure
    scripts/measure.py cold-start rss           # only some of them
    scripts/measure.py size --function notifier # only some functions (repeat --function)

* Cold start: from process start (just before exec) to the binary's first Runtime API
  `GET /2018-06-01/runtime/invocation/next`, served by a fake Runtime API on 127.0.0.1. Median
  of 25 runs of the release build for this machine, per function. Target <= 10 ms.
* Peak RSS: the fake Runtime API hands the binary one 1000-record SNS-enveloped batch; every
  record is delivered to a local webhook (204). VmHWM from /proc after the response. Target
  <= 24 MiB.
* Size of the arm64 bootstrap (`cargo lambda build --release --arm64`, what `sam build` ships).
  Target <= 6 MiB.

Everything runs on loopback; nothing reaches AWS (the SDK endpoint is a closed local port).
"""
import http.server
import json
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
RUNS = 25
RECORDS = 1000


class RuntimeApi(http.server.ThreadingHTTPServer):
    """A fake Lambda Runtime API: hands out one event, collects the response."""

    daemon_threads = True

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.event = event
        self.first_next = threading.Event()
        self.first_next_at = None
        self.response = None
        self.responded = threading.Event()
        self.served = False


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        api = self.server
        if self.path.endswith("/invocation/next"):
            if api.first_next_at is None:
                api.first_next_at = time.perf_counter()
                api.first_next.set()
            if api.event is None or api.served:
                time.sleep(30)  # keep the runtime parked until it is killed
                return
            api.served = True
            body = api.event
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            deadline = int((time.time() + 300) * 1000)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:notifier")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        data = self.rfile.read(length)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if "/response" in self.path or "/error" in self.path:
            self.server.response = (self.path, data)
            self.server.responded.set()


class Webhook(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()


FUNCTIONS = ["notifier", "example-consumer", "task-monitor", "dlq-replay"]


def env(api_port, webhook_port, function="notifier"):
    return {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api_port}",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_LAMBDA_LOG_LEVEL": "WARN",
        "MAILROOM_BACKOFF": "off",
        "NOTIFIER_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/hook",
        "NOTIFIER_CALLBACK_FIELD": "",
        "NOTIFIER_SIGNING_SECRET": "whsec_measure",
        "NOTIFIER_ALLOW_PRIVATE_DESTINATIONS": "true",
        # What the operations functions need to finish their cold start (none of it is
        # reached). Only them: a ledger table would turn the notifier's idempotency on, against
        # a DynamoDB that is not there.
        **({"MAILROOM_LEDGER_TABLE": "mailroom-ledger"} if function == "task-monitor" else {}),
        **({"MAILROOM_REPLAY_ALLOWLIST": "mailroom-notifier-dlq,mailroom-notifier"}
           if function == "dlq-replay" else {}),
    }


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def batch(n):
    template = json.loads((ROOT / "events" / "sqs-sns-envelope.json").read_text())["Records"][0]
    records = []
    for i in range(n):
        r = dict(template)
        r["messageId"] = f"m-{i:05d}"
        envelope = json.loads(r["body"])
        envelope["Message"] = json.dumps({"order_id": f"o-{i}", "amount_cents": 100 + i, "customer": "c-42"})
        envelope["MessageId"] = f"sns-{i:05d}"
        r["body"] = json.dumps(envelope)
        records.append(r)
    return json.dumps({"Records": records}).encode()


def cold_start(binary, webhook_port, function):
    samples = []
    for _ in range(RUNS):
        api = serve(RuntimeApi(None))
        started = time.perf_counter()
        proc = subprocess.Popen([binary], env=env(api.server_address[1], webhook_port, function),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not api.first_next.wait(10):
            proc.kill()
            sys.exit("the binary never asked for an event")
        samples.append((api.first_next_at - started) * 1000)
        proc.kill()
        proc.wait()
        api.shutdown()
    return statistics.median(samples), min(samples), max(samples)


def peak_rss(binary, webhook_port):
    api = serve(RuntimeApi(batch(RECORDS)))
    proc = subprocess.Popen([binary], env=env(api.server_address[1], webhook_port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not api.responded.wait(120):
        proc.kill()
        sys.exit("no response to the 1000-record batch")
    status = pathlib.Path(f"/proc/{proc.pid}/status").read_text()
    hwm_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1])
    proc.kill()
    proc.wait()
    path, body = api.response
    failures = len(json.loads(body).get("batchItemFailures", [])) if "/response" in path else "error"
    return hwm_kib / 1024, failures


def arm64_size(functions):
    for function in functions:
        # From the function's own directory, one at a time, as `sam build` runs it.
        cmd = [str(VENV_BIN / "cargo-lambda"), "lambda", "build", "--release", "--arm64", "--bin", function]
        subprocess.run(cmd, cwd=ROOT / "functions" / function, check=True,
                       env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"})
    return {f: (ROOT / "target" / "lambda" / f / "bootstrap").stat().st_size / (1024 * 1024)
            for f in functions}


def main():
    args = sys.argv[1:]
    functions = [args[i + 1] for i, a in enumerate(args) if a == "--function"] or FUNCTIONS
    wanted = {a for a in args if a in ("cold-start", "rss", "size")} or {"cold-start", "rss", "size"}
    if "rss" in wanted and "notifier" not in functions:
        functions = functions + ["notifier"]
    if wanted & {"cold-start", "rss"}:
        packages = [arg for f in functions for arg in ("-p", f)]
        subprocess.run(["cargo", "build", "--release", "--quiet", *packages], cwd=ROOT, check=True)
    webhook = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook))
    port = webhook.server_address[1]
    if "cold-start" in wanted:
        for function in functions:
            binary = str(ROOT / "target" / "release" / function)
            median, low, high = cold_start(binary, port, function)
            print(f"{function}: cold start to first /next: median {median:.2f} ms over {RUNS} runs (min {low:.2f}, max {high:.2f}); target <= 10 ms")
    if "rss" in wanted:
        rss, failures = peak_rss(str(ROOT / "target" / "release" / "notifier"), port)
        print(f"notifier: peak RSS with a {RECORDS}-record batch: {rss:.1f} MiB ({failures} batchItemFailures); target <= 24 MiB")
    if "size" in wanted:
        for function, size in arm64_size(functions).items():
            print(f"{function}: arm64 bootstrap: {size:.2f} MiB; target <= 6 MiB")


if __name__ == "__main__":
    main()
