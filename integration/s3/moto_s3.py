"""A real S3-compatible server for tests and benchmarks: moto in server mode
with authentication on (SigV4 signatures and access keys are checked).

    python moto_s3.py PORT CREDENTIALS_FILE

Creates an IAM user with full access and an access key through the first
unauthenticated requests, writes the key to CREDENTIALS_FILE as shell
variables (FINK_TEST_S3_ENDPOINT, FINK_TEST_S3_ACCESS_KEY,
FINK_TEST_S3_SECRET_KEY), prints "ready ENDPOINT" and serves until killed.
"""
import json
import os
import signal
import sys
import threading

# Read by moto at import: only this many requests go unauthenticated (the
# setup below); every later one must be signed with a known key.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402


def main():
    port, creds_file = int(sys.argv[1]), sys.argv[2]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="setup", aws_secret_access_key="setup",
    )
    iam.create_user(UserName="fink")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="fink", PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="fink")["AccessKey"]
    tmp = creds_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"FINK_TEST_S3_ENDPOINT={endpoint}\n")
        f.write(f"FINK_TEST_S3_ACCESS_KEY={key['AccessKeyId']}\n")
        f.write(f"FINK_TEST_S3_SECRET_KEY={key['SecretAccessKey']}\n")
    os.replace(tmp, creds_file)
    print(f"ready {endpoint}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
