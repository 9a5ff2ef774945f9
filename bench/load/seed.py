#!/usr/bin/env python3
"""Creates N organizations through the admin API, each with a key and a subscription, and writes
their keys ("pk:sk" per line) to a file for the load scripts. Usage: seed.py BASE_URL OPERATOR_KEY N OUT [CREDITS]"""
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor

base, operator, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
credits = int(sys.argv[5]) if len(sys.argv) > 5 else 1_000_000_000_000

def call(method, path, body):
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": "Bearer " + operator, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())

def organization(index):
    org = call("POST", "/v1/admin/organizations", {"name": f"bench-{index}"})
    key = call("POST", f"/v1/admin/organizations/{org['id']}/keys", {})
    call("PUT", f"/v1/admin/organizations/{org['id']}/subscription",
         {"plan": "bench", "creditsPerPeriod": credits, "period": "year"})
    call("POST", f"/v1/admin/organizations/{org['id']}/assistants", {"name": "bot"})
    return key["publicKey"] + ":" + key["secretKey"]

with ThreadPoolExecutor(max_workers=16) as pool:
    keys = list(pool.map(organization, range(count)))
with open(out, "w") as file:
    file.write("\n".join(keys) + "\n")
print(f"seeded {count} organizations")
