"""The query-hook plugins demo: `nox -s demo` runs it after the SQL demo.

Creates a role per user (`heliosdb-wasm role create`, passwords kept as
SCRAM-SHA-256 verifiers), starts `heliosdb-wasm serve` with
examples/plugins/plugins.toml in front of a small multi-tenant shop, then
connects with psycopg and a password as an analyst of each tenant and as an
admin (each also with a signed JWT), and shows what each sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).parent
MANIFEST = HERE / "plugins.toml"
SEED = """
CREATE TABLE customers(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT,
                       ssn TEXT, email TEXT, phone TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL,
                    customer_id INTEGER, total REAL);
INSERT INTO customers VALUES
  (1, 'acme', 'Alice', '123-45-6789', 'alice@acme.test', '+1 (555) 123-4567'),
  (2, 'acme', 'Bob', '222-33-4444', 'bob@acme.test', '555-987-6543'),
  (3, 'globex', 'Carol', '999-88-7777', 'carol@globex.test', '555-000-1111');
INSERT INTO orders VALUES (10, 'acme', 1, 100.0), (11, 'acme', 2, 50.0),
                          (12, 'globex', 3, 999.0);
"""
# The demo's users and their passwords (a real deployment would not keep
# them in a file).
USERS = {"ann": "ann-demo-pw", "gus": "gus-demo-pw", "root": "root-demo-pw", "eve": "eve-demo-pw"}
QUERY = (
    "SELECT c.name, c.ssn, c.email, o.total FROM customers c"
    " JOIN orders o ON o.customer_id = c.id ORDER BY o.id"
)


def token(sub: str, tenant: str, role: str) -> str:
    config = tomllib.loads(MANIFEST.read_text())["plugin"][0]["config"]

    def enc(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {
        "sub": sub,
        "tenant": tenant,
        "role": role,
        "iss": config["issuer"],
        "aud": config["audience"],
        "exp": int(time.time()) + 600,
    }
    head = enc({"alg": "HS256", "typ": "JWT"}) + "." + enc(claims)
    sig = hmac.new(config["secret"].encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shop.db"
        subprocess.run(
            ["heliosdb-wasm", "sql", "--db", str(db), SEED], check=True, stdout=subprocess.DEVNULL
        )
        for user, password in USERS.items():
            subprocess.run(
                ["heliosdb-wasm", "role", "create", user, "--db", str(db), "--password-stdin"],
                input=password + "\n",
                text=True,
                check=True,
            )
        server = subprocess.Popen(
            [
                "heliosdb-wasm",
                "serve",
                "--db",
                str(db),
                "--port",
                "0",
                "--plugins",
                str(MANIFEST),
                "--metrics-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert server.stdout is not None
            banner = []
            while not banner or not banner[-1].startswith("metrics at"):
                banner.append(server.stdout.readline())
                if not banner[-1]:
                    raise SystemExit("the server did not start: " + "".join(banner))
            print("".join(banner), end="")
            port = int(re.search(r"listening on [\d.]+:(\d+)", banner[0]).group(1))  # type: ignore[union-attr]
            metrics = re.search(r"(http://\S+/metrics)", "".join(banner))
            for who, tenant, role in (
                ("ann", "acme", "analyst"),
                ("gus", "globex", "analyst"),
                ("root", "acme", "admin"),
            ):
                print(f"\n-- {who}: tenant {tenant}, role {role}")
                with psycopg.connect(
                    host="127.0.0.1",
                    port=port,
                    user=who,
                    password=USERS[who],
                    dbname="shop",
                    options=f"-c jwt={token(who, tenant, role)}",
                    autocommit=True,
                ) as conn:
                    for row in conn.execute(QUERY):
                        print("  ", row)
                    try:
                        conn.execute("SET tenant = 'globex'")
                    except psycopg.errors.InsufficientPrivilege as exc:
                        print("   SET tenant refused:", str(exc).splitlines()[0])
            print("\n-- a wrong password")
            try:
                psycopg.connect(host="127.0.0.1", port=port, user="ann", password="guess",
                                dbname="shop")  # fmt: skip
            except psycopg.OperationalError as exc:
                print("   refused:", str(exc).strip().splitlines()[-1])
            print("\n-- a password but no token")
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                user="eve",
                password=USERS["eve"],
                dbname="shop",
                autocommit=True,
            ) as conn:
                try:
                    conn.execute(QUERY)
                except psycopg.errors.InvalidAuthorizationSpecification as exc:
                    print("   refused:", str(exc).splitlines()[0])
            if metrics:
                import urllib.request

                with urllib.request.urlopen(metrics.group(1), timeout=5) as response:
                    lines = response.read().decode().splitlines()
                print("\n-- " + metrics.group(1))
                for line in lines:
                    if line.startswith(("heliosdb_plugin_calls_total", "heliosdb_queries_total")):
                        print("  ", line)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
