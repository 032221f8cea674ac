"""Read topics as fink-client's users do (read_committed,
SASL/SCRAM-SHA-512, key = the Avro schema, value = schemaless Avro) and log
when each alert becomes readable: one line per record, "topic id time"
(the id: diaSourceId for Rubin alerts, candid for ZTF ones).

integration/bench_visits.sh and bench_latency.sh join the ids with the
files they landed.
Stops on SIGTERM, flushing what it logged.
    python visit_consumer.py BOOTSTRAP USER PASSWORD_FILE OUT TOPIC...
"""

import io
import json
import signal
import sys
import time

import fastavro
from confluent_kafka import Consumer, TopicPartition

bootstrap, user, password_file, out_path = sys.argv[1:5]
topics = sys.argv[5:]
password = open(password_file).read().strip()

c = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "group.id": "bench-visits-%d" % time.time_ns(),
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
    }
)
md = c.list_topics(timeout=30)
parts = [TopicPartition(t, p, 0) for t in topics for p in md.topics[t].partitions]
c.assign(parts)

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
schemas = {}


def varint(b, pos):
    """An Avro long (zigzag varint) at pos: (value, next pos)."""
    shift = v = 0
    while True:
        x = b[pos]
        pos += 1
        v |= (x & 0x7F) << shift
        if x < 0x80:
            return (v >> 1) ^ -(v & 1), pos
        shift += 7


def id_reader(parsed):
    """When the record starts with its id (a long, maybe nullable), read just
    that: a Rubin alert is ~176 KB and decoding all of it would take this
    consumer more CPU than fink spends publishing it."""
    first = parsed["fields"][0]
    if first["name"] not in ("diaSourceId", "candid"):
        return None
    t = first["type"]
    if t == "long":
        return lambda v: varint(v, 0)[0]
    if isinstance(t, list) and len(t) == 2 and "long" in t and "null" in t:
        long_at = t.index("long")

        def read(v):
            branch, pos = varint(v, 0)
            return varint(v, pos)[0] if branch == long_at else -1

        return read
    return None


out = open(out_path, "w")
print("ready", flush=True)
while not stop:
    msgs = c.consume(num_messages=1000, timeout=0.2)
    now = time.time()
    for m in msgs:
        if m.error():
            continue
        key = m.key()
        entry = schemas.get(key)
        if entry is None:
            raw = json.loads(key)
            entry = (fastavro.parse_schema(raw), id_reader(raw))
            schemas[key] = entry
        schema, fast = entry
        if fast is not None:
            out.write("%s %d %.6f\n" % (m.topic(), fast(m.value()), now))
            continue
        rec = fastavro.schemaless_reader(io.BytesIO(m.value()), schema)
        # Rubin alerts are told apart by diaSourceId, ZTF ones by candid.
        sid = rec.get("diaSourceId")
        if sid is None:
            sid = rec.get("candid")
        if sid is None:
            sid = (rec.get("diaSource") or {}).get("diaSourceId", -1)
        out.write("%s %d %.6f\n" % (m.topic(), sid, now))
    if msgs:
        out.flush()
out.close()
c.close()
