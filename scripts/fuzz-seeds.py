#!/usr/bin/env python3
"""Seeds the cargo fuzz corpus from the fixtures and real captures (scripts/fuzz).

usage: fuzz-seeds.py CORPUS_DIR SHARED_FIXTURES_DIR

Each seed is one input as the harness reads it: for amqp_delivery and http_post a first byte
choosing the route (or events/samples), then the body; for timestamp the text; for
config_file the YAML file. Files are named by content digest, so seeding again adds nothing.
"""
import hashlib
import json
import pathlib
import sys

corpus = pathlib.Path(sys.argv[1])
shared = pathlib.Path(sys.argv[2])
root = pathlib.Path(__file__).resolve().parent.parent
fixtures = root / "crates/steward-meter/tests/fixtures"


def put(target, data):
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def v2(envelope):
    return {"oslo.version": "2.0", "oslo.message": json.dumps(envelope)}


for path in sorted((fixtures / "notifications").rglob("*.json")):
    envelope = json.loads(path.read_text())
    put("amqp_delivery", b"\0" + json.dumps(envelope).encode())
    put("amqp_delivery", b"\1" + json.dumps(v2(envelope)).encode())
for line in (shared / "real/notifications.jsonl").read_text().splitlines():
    if line.strip():
        put("amqp_delivery", b"\2" + json.dumps(v2(json.loads(line)["body"])).encode())
for path in sorted(fixtures.glob("ceilometer/*.json")) + sorted(fixtures.glob("captures/ceilometer-http/*.json")):
    value = json.loads(path.read_text())
    body = json.dumps(value.get("body", value) if isinstance(value, dict) else value).encode()
    put("http_post", b"\0" + body)
    put("http_post", b"\1" + body)
for text in ["2026-10-01T00:00:00Z", "2026-10-01T00:00:00.123456+02:00", "2026-10-01 00:00:00.1",
             "2016-12-31T23:59:60Z", "1764000000", "1764000000.5", "\"None\"", "20261001T000000Z"]:
    put("timestamp", text.encode())
for path in sorted((root / "docs/examples").glob("*.yaml")):
    put("config_file", path.read_bytes())
