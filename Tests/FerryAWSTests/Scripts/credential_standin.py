#!/usr/bin/env python3
"""Stands in for EC2 IMDSv2, the container credentials endpoint and STS, on 127.0.0.1.

Prints {"port": N} once listening. Every issued key is numbered (ASIA<SOURCE><n>) so tests can see
refreshes. Control: POST /_config {"expires_in": seconds, "fail": bool}; GET /_count.
"""
import datetime
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"expires_in": 3600, "fail": False, "counts": {}, "serial": 0, "container_token": "container-secret-token",
         "web_token": "web-identity-token", "last_sts_key": None}
LOCK = threading.Lock()


def issue(source):
    with LOCK:
        STATE["serial"] += 1
        STATE["counts"][source] = STATE["counts"].get(source, 0) + 1
        n = STATE["serial"]
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=STATE["expires_in"])
    return {"AccessKeyId": f"ASIA{source.upper()}{n}", "SecretAccessKey": f"secret-{source}-{n}",
            "Token": f"token-{source}-{n}", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def failing(self):
        if STATE["fail"]:
            self.reply(500, '{"message": "stand-in told to fail"}')
            return True
        return False

    def do_PUT(self):
        if self.path == "/latest/api/token":
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.reply(400, "missing TTL", "text/plain")
            return self.reply(200, "imds-session-token", "text/plain")
        self.reply(404, "")

    def do_GET(self):
        if self.path == "/_last_sts_key":
            with LOCK:
                return self.reply(200, json.dumps({"key": STATE["last_sts_key"]}))
        if self.path == "/_count":
            with LOCK:
                return self.reply(200, json.dumps(STATE["counts"]))
        if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                return self.reply(401, "")
            role = self.path.rsplit("/", 1)[1]
            if not role:
                return self.reply(200, "ferry-role\n", "text/plain")
            if self.failing():
                return
            body = issue("imds")
            body["Code"] = "Success"
            return self.reply(200, json.dumps(body))
        if self.path == "/container/credentials":
            if self.headers.get("Authorization") != STATE["container_token"]:
                return self.reply(403, '{"message": "bad authorization token"}')
            if self.failing():
                return
            return self.reply(200, json.dumps(issue("container")))
        self.reply(404, "")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if self.path == "/_config":
            with LOCK:
                STATE.update(json.loads(body))
            return self.reply(200, "{}")
        form = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        action = form.get("Action")
        if self.failing():
            return
        if action == "AssumeRole":
            auth = self.headers.get("Authorization", "")
            if "Credential=" not in auth:
                return self.reply(403, "<ErrorResponse><Error><Code>MissingAuthenticationToken</Code><Message>unsigned</Message></Error></ErrorResponse>", "text/xml")
            with LOCK:
                STATE["last_sts_key"] = auth.split("Credential=")[1].split("/")[0]
            c = issue("sts")
        elif action == "AssumeRoleWithWebIdentity":
            if form.get("WebIdentityToken") != STATE["web_token"]:
                return self.reply(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error></ErrorResponse>", "text/xml")
            c = issue("web")
        else:
            return self.reply(400, "<ErrorResponse><Error><Code>InvalidAction</Code><Message>no</Message></Error></ErrorResponse>", "text/xml")
        xml = (f"<{action}Response><{action}Result><Credentials><AccessKeyId>{c['AccessKeyId']}</AccessKeyId>"
               f"<SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey><SessionToken>{c['Token']}</SessionToken>"
               f"<Expiration>{c['Expiration']}</Expiration></Credentials></{action}Result></{action}Response>")
        self.reply(200, xml, "text/xml")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
