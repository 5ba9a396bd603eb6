#!/usr/bin/env python3
"""Signs requests with botocore for the differential SigV4 test.

Reads a JSON list of requests on stdin and prints a JSON list of
{"authorization": ..., "canonical": ...}, one per request, in order.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    requests = json.load(sys.stdin)
    out = []
    for r in requests:
        fixed = datetime.datetime.fromtimestamp(r["epoch"], tz=datetime.timezone.utc)
        botocore.auth.get_current_datetime = lambda fixed=fixed: fixed.replace(tzinfo=None)
        creds = Credentials(r["access_key_id"], r["secret_access_key"], r.get("session_token"))
        cls = botocore.auth.S3SigV4Auth if r["service"] == "s3" else botocore.auth.SigV4Auth
        signer = cls(creds, r["service"], r["region"])
        request = AWSRequest(method=r["method"], url="http://" + r["host"] + r["path"],
                             data=r["body"].encode("utf-8"), params=[tuple(p) for p in r["query"]])
        for name, value in r["headers"]:
            request.headers[name] = value  # HTTPMessage appends, so duplicates stay
        signer.add_auth(request)
        out.append({"authorization": request.headers["Authorization"],
                    "canonical": signer.canonical_request(request)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
