"""The seeds' approach to loading secrets: a boto3 loop calling GetSecretValue once per name.

Usage: boto3_loop.py ENDPOINT NAME_PREFIX COUNT

Reads NAME_PREFIX000 .. NAME_PREFIX{COUNT-1} (three digits) from the Secrets Manager at ENDPOINT and prints
one JSON line: the time of the loop alone (client creation and imports excluded), how many secrets it read
and their total length (never a value). skm-bench times the whole process separately.
"""

import json
import sys
import time

import boto3


def main() -> None:
    endpoint, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    names = [f"{prefix}{i:03}" for i in range(count)]
    start = time.perf_counter()
    values = {}
    for name in names:
        values[name] = client.get_secret_value(SecretId=name)["SecretString"]
    loop_seconds = time.perf_counter() - start
    print(json.dumps({
        "loop_seconds": loop_seconds,
        "secrets": len(values),
        "bytes": sum(len(v) for v in values.values()),
    }))


if __name__ == "__main__":
    main()
