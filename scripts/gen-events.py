#!/usr/bin/env python3
"""Regenerates the SQS fixtures in events/, shaped exactly as Lambda delivers them.

Started from `sam local generate-event sqs receive-message`; bodies, attributes and MD5s are
filled in consistently. Run it after changing a fixture's content here, never edit by hand.
"""
import hashlib
import json
import pathlib

ACCOUNT = "123456789012"
REGION = "us-east-1"
EVENTS = pathlib.Path(__file__).resolve().parent.parent / "events"
T0 = 1767225600000  # 2026-01-01T00:00:00Z


def attr(value, data_type="String"):
    return {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": data_type}


def record(n, queue, body, message_attributes=None, fifo_group=None, receive_count=1):
    attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(T0 + n),
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": str(T0 + n + 3),
    }
    if fifo_group is not None:
        attributes.update(
            SequenceNumber=str(18849496460467696128 + n),
            MessageGroupId=fifo_group,
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
        )
    return {
        "messageId": f"0e7a3c1b-{n:04d}-4b7e-9f3a-5c2d8e1f{n:04d}",
        "receiptHandle": f"AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a{n:04d}Mailroom==",
        "body": body,
        "attributes": attributes,
        "messageAttributes": message_attributes or {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def envelope(n, topic, payload, attrs, fifo=False):
    env = {
        "Type": "Notification",
        "MessageId": f"6f1c3b7e-0d5a-5b8e-9a41-2f8c1e4d{n:04d}",
        "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}",
        "Message": json.dumps(payload, separators=(",", ":")),
        "Timestamp": f"2025-12-31T23:59:5{n % 10}.000Z",
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:{REGION}:{ACCOUNT}:{topic}:c7f0a1e2-0000-4000-8000-00000000000{n % 10}",
        "MessageAttributes": {k: {"Type": "String", "Value": v} for k, v in attrs.items()},
    }
    if fifo:
        # FIFO topics send no signature fields, and add a sequence number.
        env["SequenceNumber"] = str(10000000000000000000 + n)
    else:
        env.update(
            SignatureVersion="1",
            Signature="EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
            SigningCertURL=f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        )
    return json.dumps(env, separators=(",", ":"))


def order(order_id, amount):
    return {"order_id": order_id, "amount_cents": amount, "customer": "c-42"}


def write(name, records):
    (EVENTS / name).write_text(json.dumps({"Records": records}, indent=2) + "\n")


def main():
    EVENTS.mkdir(exist_ok=True)
    write("sqs-sns-envelope.json", [
        record(i, "mailroom-example", envelope(1001 + i, "mailroom-events", order(f"o-{1001 + i}", 1500 + i),
                                               {"kind": "order.placed", "task_id": f"task-{1001 + i}",
                                                "traceparent": f"00-4bf92f3577b34da6a3ce929d0e0e{4736 + i}-00f067aa0ba902b7-01"}))
        for i in range(3)
    ])
    write("sqs-raw.json", [
        record(10 + i, "mailroom-example", json.dumps(order(f"o-{2001 + i}", 700 + i), separators=(",", ":")),
               {"kind": attr("order.placed"), "task_id": attr(f"task-{2001 + i}")})
        for i in range(3)
    ])
    fifo = []
    for i, group in enumerate(["customer-a", "customer-a", "customer-b", "customer-a", "customer-b"]):
        fifo.append(record(20 + i, "mailroom-example.fifo",
                           envelope(3001 + i, "mailroom-events.fifo", order(f"o-{3001 + i}", 100 + i),
                                    {"kind": "order.placed"}, fifo=True),
                           fifo_group=group))
    write("sqs-fifo.json", fifo)
    write("sqs-notifier-callback.json", [
        record(40 + i, "mailroom-notifier",
               envelope(5001 + i, "mailroom-events",
                        {**order(f"o-{5001 + i}", 2500 + i),
                         "callback_url": f"https://hooks.example.com/mailroom/orders/o-{5001 + i}"},
                        {"kind": "order.placed"}))
        for i in range(2)
    ])
    write("sqs-poison.json", [
        record(30, "mailroom-example", envelope(4001, "mailroom-events", order("o-4001", 990), {"kind": "order.placed"})),
        record(31, "mailroom-example", envelope(4002, "mailroom-events", order("o-4002", 0), {"kind": "order.placed"})),
        record(32, "mailroom-example", envelope(4003, "mailroom-events", {"order_id": 4003}, {"kind": "order.placed"})),
        record(33, "mailroom-example", "this is not JSON", {"kind": attr("order.placed")}, receive_count=2),
    ])
    # One record whose binary attribute is not base64, as in Powertools' sample `sqsEvent.json`:
    # the record itself does not decode, and only it may fail.
    bad = record(51, "mailroom-example", json.dumps(order("o-6002", 800), separators=(",", ":")),
                 {"checksum": {"binaryValue": "base64Str", "stringListValues": [], "binaryListValues": [],
                               "dataType": "Binary"}})
    write("sqs-malformed-record.json", [
        record(50, "mailroom-example", json.dumps(order("o-6001", 700), separators=(",", ":")),
               {"kind": attr("order.placed")}),
        bad,
        record(52, "mailroom-example", json.dumps(order("o-6003", 900), separators=(",", ":")),
               {"kind": attr("order.placed")}),
    ])


if __name__ == "__main__":
    main()
