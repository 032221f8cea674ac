"""Read a topic with fink-client's own AlertConsumer, as a Fink user would,
and print the decoded alerts as JSON lines (bytes as base64).

usage: fink_client_read.py TOPIC USER PASSWORD GROUP BOOTSTRAP N TIMEOUT
exit 0: N alerts read; 3: the broker refused (printed as REFUSED: ...); 4: timeout
"""
import base64
import datetime
import json
import sys
import time

from fink_client.consumer import AlertConsumer

topic, user, password, group, bootstrap, n, timeout = sys.argv[1:8]
n, timeout = int(n), float(timeout)


def default(o):
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if isinstance(o, (datetime.datetime, datetime.date)):
        return o.isoformat()
    return str(o)


config = {"username": user, "password": password, "group.id": group, "bootstrap.servers": bootstrap}
got = 0
deadline = time.time() + timeout
with AlertConsumer([topic], config, survey="ztf") as consumer:
    while got < n and time.time() < deadline:
        try:
            t, alert, key = consumer.poll(1.0)
        except Exception as e:  # fink-client raises on Kafka errors (authorization, ...)
            print("REFUSED: {}".format(e))
            sys.exit(3)
        if alert is None:
            continue
        print(json.dumps(alert, default=default))
        got += 1
sys.exit(0 if got >= n else 4)
