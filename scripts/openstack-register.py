#!/usr/bin/env python3
"""Idempotent Keystone registration for scripts/openstack-services (stdlib only).

usage: openstack-register.py SERVICE...   services: placement nova neutron cinder octavia projects

Keystone: http://127.0.0.1:5000/v3, admin/admin-secret (project admin), from scripts/openstack.
Each service gets a user <svc>/<svc>-secret in project `service` with the roles admin and
service, and its catalog entries (public, internal, admin; RegionOne). `projects` creates the
test projects steward-a and steward-b with the users alice and bob (password <user>-secret,
role member).
"""
import json
import sys
import urllib.request

KS = "http://127.0.0.1:5000/v3"

CATALOG = {
    "placement": [("placement", "placement", "http://127.0.0.1:8778")],
    "nova": [("nova", "compute", "http://127.0.0.1:8774/v2.1")],
    "neutron": [("neutron", "network", "http://127.0.0.1:9696")],
    "octavia": [("octavia", "load-balancer", "http://127.0.0.1:9876")],
    "cinder": [
        ("cinderv3", "volumev3", "http://127.0.0.1:8776/v3/%(project_id)s"),
        ("cinder", "block-storage", "http://127.0.0.1:8776/v3/%(project_id)s"),
    ],
}


def call(method, path, body=None, token=None, headers=False):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(KS + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(request) as response:
        raw = response.read()
        out = json.loads(raw) if raw else {}
        return (out, response.headers) if headers else out


def admin_token():
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": "admin-secret"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    _, headers = call("POST", "/auth/tokens", body, headers=True)
    return headers["X-Subject-Token"]


def find_or_create(token, collection, name, body):
    found = call("GET", "/%s?name=%s" % (collection, name), token=token)[collection]
    if found:
        return found[0]["id"]
    singular = collection[:-1]
    return call("POST", "/" + collection, {singular: body}, token=token)[singular]["id"]


def main():
    token = admin_token()
    role = lambda name: find_or_create(token, "roles", name, {"name": name})
    admin, service, member = role("admin"), role("service"), role("member")
    service_project = find_or_create(
        token, "projects", "service", {"name": "service", "domain_id": "default"})
    for name in sys.argv[1:]:
        if name == "projects":
            for project_name, user_name in (("steward-a", "alice"), ("steward-b", "bob")):
                project = find_or_create(token, "projects", project_name,
                                         {"name": project_name, "domain_id": "default"})
                user = find_or_create(token, "users", user_name, {
                    "name": user_name, "domain_id": "default",
                    "password": user_name + "-secret", "default_project_id": project})
                call("PUT", "/projects/%s/users/%s/roles/%s" % (project, user, member), token=token)
                print("project %s %s, user %s %s" % (project_name, project, user_name, user))
            continue
        if name not in CATALOG:
            sys.exit("openstack-register: unknown service %r" % name)
        user = find_or_create(token, "users", name, {
            "name": name, "domain_id": "default", "password": name + "-secret",
            "default_project_id": service_project})
        for r in (admin, service):
            call("PUT", "/projects/%s/users/%s/roles/%s" % (service_project, user, r), token=token)
        for service_name, service_type, url in CATALOG[name]:
            if call("GET", "/services?type=%s" % service_type, token=token)["services"]:
                continue
            sid = call("POST", "/services",
                       {"service": {"name": service_name, "type": service_type}},
                       token=token)["service"]["id"]
            for interface in ("public", "internal", "admin"):
                call("POST", "/endpoints", {"endpoint": {
                    "service_id": sid, "interface": interface, "url": url,
                    "region_id": "RegionOne"}}, token=token)
        print("registered", name)


if __name__ == "__main__":
    main()
