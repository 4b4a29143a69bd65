#!/usr/bin/env python3
"""A fake Odoo 16, 17, 18 or 19 for Steward's Odoo sink tests (standard library only).

No Odoo server can be installed from the package registries Steward builds from, so the tests
talk to this one. It serves, on loopback, what an invoicing client uses, the way the real
versions behave (measured on real Odoo 18.0 and 19.0: ../shared/reference/odoo-real-behaviour.md;
version differences: odoo-external-api.md section 2.5):

  POST /xmlrpc/2/common, /xmlrpc/2/object   XML-RPC (version, authenticate, execute_kw)
  POST /jsonrpc                             JSON-RPC 2.0 (services common and object)
  POST /json/2/<model>/<method>             JSON-2, bearer API key: 19 only; 18 answers
                                            303 -> /web/login, 16/17 404
  GET  /web/version                         19 only
  POST /web/webclient/version_info, /web/session/authenticate   (for python3-odoorpc)

Behaviours reproduced: unit prices rounded to the "Product Price" precision (2 digits) on 16-18
and kept on 19 (quantities likewise to "Product Unit of Measure", 2 digits: not measured, assumed
to behave as prices); the company's default sale tax applied to products created without taxes and
to lines without tax_ids; draft invoices without a number (name False) until action_post;
posted moves refuse write and unlink; `ref` search; missing records, access errors (user
"viewer" may only read) and wrong passwords answered as Odoo does per protocol; None sent as
False over XML-RPC; field names per version (product type, sale.order.line UoM and taxes);
19's deprecation warnings for XML-RPC and /jsonrpc (logged to stderr).

Test control (not Odoo): POST /fake/inject {"model", "method", "mode", "times"} with mode
"fault-after-commit" (the call commits, then answers an error), "sleep-after-commit" (commits,
then answers after "seconds") or "http-500" (answers 500 before doing anything); GET /fake/records/<model> lists every record; POST /fake/precision
{"name", "digits"} sets a decimal.precision.

Usage: fake-odoo.py --version 18 --port 8069 [--database steward]
Users: admin / admin (API key "steward-api-key"), viewer / viewer (read only).
"""

import argparse
import json
import re
import sys
import threading
import time
import traceback
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OdooError(Exception):
    """An exception as Odoo raises it: `name` is the Python class path clients see."""

    def __init__(self, name, message, xmlrpc_code, http_status):
        super().__init__(message)
        self.name = name
        self.message = message
        self.xmlrpc_code = xmlrpc_code
        self.http_status = http_status


def access_denied():
    return OdooError("odoo.exceptions.AccessDenied", "Access Denied", 3, 401)


def missing(model, ids, uid):
    return OdooError(
        "odoo.exceptions.MissingError",
        "Record does not exist or has been deleted.\n(Record: %s(%s), User: %d)"
        % (model, "".join("%d," % i for i in ids), uid),
        2,
        404,
    )


def user_error(message):
    return OdooError("odoo.exceptions.UserError", message, 2, 422)


def value_error(message):
    return OdooError("builtins.ValueError", message, 1, 422)


def access_error(model, operation):
    label = MODELS.get(model, {}).get("label", model)
    return OdooError(
        "odoo.exceptions.AccessError",
        "You are not allowed to %s '%s' (%s) records." % (operation, label, model),
        4,
        403,
    )


# Field names per model; a name not listed is refused like Odoo's "Invalid field".
COMMON_FIELDS = {"id", "display_name", "create_date", "write_date"}


def model_fields(version):
    product_type = {"type", "detailed_type"} if version <= 17 else {"type", "is_storable"}
    sale_line = (
        {"product_uom", "tax_id"} if version <= 18 else {"product_uom_id", "tax_ids"}
    )
    return {
        "res.partner": {"name", "ref", "is_company", "email", "vat", "active"},
        "product.product": {"name", "default_code", "lst_price", "taxes_id", "uom_id",
                            "invoice_policy", "sale_ok", "product_tmpl_id"} | product_type,
        "uom.uom": {"name", "factor", "category_id"} if version <= 18
        else {"name", "relative_factor", "relative_uom_id"},
        "account.tax": {"name", "amount", "type_tax_use"},
        "account.move": {"name", "state", "move_type", "partner_id", "ref", "invoice_origin",
                         "narration", "invoice_date", "currency_id", "invoice_line_ids",
                         "amount_untaxed", "amount_tax", "amount_total", "reversed_entry_id",
                         "payment_reference"},
        "account.move.line": {"move_id", "product_id", "name", "quantity", "price_unit",
                              "tax_ids", "price_subtotal", "product_uom_id", "display_type"},
        "sale.order": {"name", "state", "partner_id", "client_order_ref", "origin",
                       "order_line", "amount_untaxed", "amount_tax", "amount_total", "note"}
        | ({"locked"} if version >= 17 else set()),
        "sale.order.line": {"order_id", "product_id", "name", "product_uom_qty", "price_unit",
                            "price_subtotal"} | sale_line,
        "decimal.precision": {"name", "digits"},
        "res.users": {"name", "login"},
        "res.currency": {"name"},
    }


MODELS = {
    "res.partner": {"label": "Contact"},
    "product.product": {"label": "Product Variant"},
    "account.move": {"label": "Journal Entry"},
    "account.move.line": {"label": "Journal Item"},
    "sale.order": {"label": "Sales Order"},
    "sale.order.line": {"label": "Sales Order Line"},
}

MANY2ONE = {"partner_id": "res.partner", "product_id": "product.product", "uom_id": "uom.uom",
            "currency_id": "res.currency", "move_id": "account.move",
            "order_id": "sale.order", "product_uom": "uom.uom", "product_uom_id": "uom.uom",
            "reversed_entry_id": "account.move", "product_tmpl_id": "product.product",
            "category_id": "uom.uom", "relative_uom_id": "uom.uom"}
ONE2MANY = {"invoice_line_ids": ("account.move.line", "move_id"),
            "order_line": ("sale.order.line", "order_id")}
MANY2MANY = {"tax_ids", "taxes_id", "tax_id"}


class Odoo:
    """The database: records per model, one lock (each call is one transaction)."""

    def __init__(self, version, database):
        self.version = version
        self.database = database
        self.lock = threading.Lock()
        self.fields = model_fields(version)
        self.records = {model: {} for model in self.fields}
        self.next_id = {model: 1 for model in self.fields}
        self.sequences = {}
        self.injections = []
        self.users = {
            2: {"login": "admin", "password": "admin", "api_key": "steward-api-key",
                "write": True},
            6: {"login": "viewer", "password": "viewer", "api_key": "viewer-api-key",
                "write": False},
        }
        for uid, user in self.users.items():
            self.records["res.users"][uid] = {"id": uid, "name": user["login"],
                                              "login": user["login"]}
        self.records["res.currency"][1] = {"id": 1, "name": "USD"}
        self.insert("account.tax", {"name": "15%", "amount": 15.0, "type_tax_use": "sale"})
        self.insert("account.tax", {"name": "7%", "amount": 7.0, "type_tax_use": "sale"})
        if version <= 18:
            self.insert("uom.uom", {"name": "Units", "factor": 1.0, "category_id": False})
            self.insert("uom.uom", {"name": "Hours", "factor": 8.0, "category_id": False})
        else:
            self.insert("uom.uom", {"name": "Units", "relative_factor": 1.0,
                                    "relative_uom_id": False})
            self.insert("uom.uom", {"name": "Hours", "relative_factor": 1.0,
                                    "relative_uom_id": False})
        self.insert("decimal.precision", {"name": "Product Price", "digits": 2})
        self.insert("decimal.precision", {"name": "Product Unit of Measure", "digits": 2})

    # --- storage ------------------------------------------------------------------------
    def insert(self, model, values):
        rid = self.next_id[model]
        self.next_id[model] += 1
        record = {"id": rid}
        record.update(values)
        self.records[model][rid] = record
        return rid

    def precision(self, name):
        for record in self.records["decimal.precision"].values():
            if record["name"] == name:
                return record["digits"]
        return 2

    # --- authentication -----------------------------------------------------------------
    def authenticate(self, db, login, password):
        if db != self.database:
            raise access_denied()
        for uid, user in self.users.items():
            if user["login"] == login and password in (user["password"], user["api_key"]):
                return uid
        return False

    def check(self, db, uid, password):
        user = self.users.get(uid) if isinstance(uid, int) else None
        if db != self.database or not user or password not in (user["password"],
                                                               user["api_key"]):
            raise access_denied()
        return uid

    def uid_of_key(self, key):
        for uid, user in self.users.items():
            if user["api_key"] == key:
                return uid
        return None

    # --- the ORM ------------------------------------------------------------------------
    def execute(self, uid, model, method, args, kwargs):
        if model not in self.fields:
            raise OdooError("builtins.KeyError", "'%s'" % model, 1, 404)
        if method.startswith("_"):
            raise OdooError("odoo.exceptions.AccessError",
                            "Private methods (such as '%s') cannot be called remotely." % method,
                            4, 403)
        writes = {"create", "write", "unlink", "action_post", "button_draft"}
        if method in writes and not self.users[uid]["write"]:
            operation = {"create": "create", "unlink": "delete"}.get(method, "modify")
            raise access_error(model, operation)
        handler = getattr(self, "m_" + method, None)
        if handler is None:
            raise OdooError("builtins.AttributeError",
                            "The method '%s.%s' does not exist" % (model, method), 1, 404)
        with self.lock:
            injection = self.take_injection(model, method)
            injected = injection and injection["mode"]
            if injected == "http-500":
                raise OdooError("fake.HTTP500", "injected failure", 1, 500)
            try:
                result = handler(uid, model, *args, **kwargs)
            except TypeError as e:
                raise OdooError("builtins.TypeError", str(e), 1, 422)
            if injected == "fault-after-commit":
                raise OdooError("psycopg2.OperationalError",
                                "server closed the connection unexpectedly (after commit)",
                                1, 500)
        if injected == "sleep-after-commit":
            # Committed; the answer comes late (a client killed meanwhile never sees it).
            time.sleep(injection.get("seconds", 30))
        return result

    def take_injection(self, model, method):
        for injection in self.injections:
            if injection["model"] == model and injection["method"] == method \
                    and injection["times"] > 0:
                injection["times"] -= 1
                return injection
        return None

    def check_fields(self, model, names):
        known = self.fields[model] | COMMON_FIELDS
        for name in names:
            if name not in known:
                raise value_error("Invalid field '%s' on model '%s'" % (name, model))

    def matches(self, record, domain):
        for term in domain:
            if term in ("&", "|", "!"):
                continue  # only conjunctions are used by the sink; '&' is the default
            field, op, value = term
            have = record.get(field, False)
            if isinstance(have, list) and field in MANY2ONE:
                have = have[0]
            if op == "=" and not have == value:
                return False
            if op == "!=" and have == value:
                return False
            if op == "in" and have not in value:
                return False
            if op == "not in" and have in value:
                return False
            if op == "ilike" and str(value).lower() not in str(have or "").lower():
                return False
            if op == "like" and str(value).strip("%") not in str(have or ""):
                return False
        return True

    def m_search(self, uid, model, domain, offset=0, limit=None, order=None, count=False):
        ids = [r["id"] for r in self.records[model].values() if self.matches(r, domain)]
        ids = ids[offset:]
        if limit:
            ids = ids[:limit]
        return len(ids) if count else ids

    def m_search_count(self, uid, model, domain, limit=None):
        return len(self.m_search(uid, model, domain))

    def m_read(self, uid, model, ids, fields=None):
        out = []
        for rid in ids:
            record = self.records[model].get(rid)
            if record is None:
                raise missing(model, [rid], uid)
            out.append(self.view(model, record, fields))
        return out

    def m_search_read(self, uid, model, domain=None, fields=None, offset=0, limit=None,
                      order=None):
        ids = self.m_search(uid, model, domain or [], offset, limit)
        return self.m_read(uid, model, ids, fields)

    def view(self, model, record, fields):
        names = fields or sorted(self.fields[model] | {"id"})
        self.check_fields(model, names)
        out = {}
        for name in names:
            value = record.get(name, False)
            if name in MANY2ONE and value:
                target = self.records[MANY2ONE[name]].get(value, {})
                value = [value, target.get("name") or target.get("display_name") or ""]
            if name == "display_name":
                value = record.get("name") or "%s,%d" % (model, record["id"])
            out[name] = value
        out["id"] = record["id"]
        return out

    def m_fields_get(self, uid, model, allfields=None, attributes=None):
        return {name: {"string": name, "type": "char"} for name in sorted(self.fields[model])}

    def m_create(self, uid, model, vals_list):
        single = isinstance(vals_list, dict)
        ids = [self.create_one(uid, model, vals) for vals in ([vals_list] if single
                                                              else vals_list)]
        return ids[0] if single else ids

    def create_one(self, uid, model, vals):
        self.check_fields(model, vals.keys())
        for name, value in vals.items():
            if name in MANY2ONE and value and value not in self.records[MANY2ONE[name]]:
                raise missing(MANY2ONE[name], [value], uid)
        values = {k: v for k, v in vals.items() if k not in ONE2MANY}
        if model == "product.product":
            values.setdefault("taxes_id", [[6, 0, [1]]])  # the company's default sale tax
            if self.version <= 17 and "detailed_type" in values:
                values["type"] = "product" if values["detailed_type"] == "product" else \
                    values["detailed_type"]
            if self.version >= 18 and values.get("type") == "product":
                raise value_error("Wrong value for product.product.type: 'product'")
            values.setdefault("lst_price", 1.0)
        if model == "account.move":
            values.setdefault("move_type", "entry")
            values.update({"state": "draft", "name": False, "currency_id": 1})
        if model == "sale.order":
            values.update({"state": "draft", "name": self.next_name("S", "S%05d")})
        for name in list(values):
            if name in MANY2MANY:
                values[name] = self.apply_m2m([], values[name])
        rid = self.insert(model, values)
        for name, (line_model, back) in ONE2MANY.items():
            if name in vals:
                self.apply_o2m(uid, model, rid, name, line_model, back, vals[name])
        self.recompute(model, rid)
        return rid

    def next_name(self, key, pattern):
        self.sequences[key] = self.sequences.get(key, 0) + 1
        return pattern % self.sequences[key]

    def apply_m2m(self, current, commands):
        ids = list(current)
        for command in commands or []:
            code = command[0]
            if code == 6:
                ids = list(command[2])
            elif code == 4 and command[1] not in ids:
                ids.append(command[1])
            elif code in (3, 2):
                ids = [i for i in ids if i != command[1]]
            elif code == 5:
                ids = []
        return ids

    def apply_o2m(self, uid, model, rid, name, line_model, back, commands):
        for command in commands:
            code = command[0]
            if code == 0:
                line = dict(command[2])
                line[back] = rid
                self.create_line(uid, line_model, line)
            elif code == 1:
                self.write_line(uid, line_model, command[1], command[2])
            elif code in (2, 3):
                self.records[line_model].pop(command[1], None)
            elif code == 5:
                for line in self.lines(line_model, back, rid):
                    self.records[line_model].pop(line["id"], None)

    def lines(self, line_model, back, rid):
        return [r for r in self.records[line_model].values() if r.get(back) == rid]

    def create_line(self, uid, line_model, vals):
        self.check_fields(line_model, vals.keys())
        product = self.records["product.product"].get(vals.get("product_id"))
        if vals.get("product_id") and product is None:
            raise missing("product.product", [vals["product_id"]], uid)
        values = dict(vals)
        price = values.get("price_unit", product["lst_price"] if product else 0.0)
        if self.version <= 18:
            price = round(price, self.precision("Product Price"))
        values["price_unit"] = price
        quantity_field = "quantity" if line_model == "account.move.line" else "product_uom_qty"
        values.setdefault(quantity_field, 1.0)
        if self.version <= 18:
            # As prices (measured); quantities were not measured on 19, assumed alike.
            values[quantity_field] = round(values[quantity_field],
                                           self.precision("Product Unit of Measure"))
        tax_field = {"account.move.line": "tax_ids"}.get(
            line_model, "tax_id" if self.version <= 18 else "tax_ids")
        if tax_field in vals:
            values[tax_field] = self.apply_m2m([], vals[tax_field])
        else:
            values[tax_field] = list(product["taxes_id"]) if product else []
        values.setdefault("name", product["name"] if product else "")
        self.insert(line_model, values)

    def write_line(self, uid, line_model, lid, vals):
        line = self.records[line_model].get(lid)
        if line is None:
            raise missing(line_model, [lid], uid)
        self.check_fields(line_model, vals.keys())
        for name, value in vals.items():
            line[name] = self.apply_m2m(line.get(name, []), value) if name in MANY2MANY \
                else value
        if self.version <= 18:
            line["price_unit"] = round(line["price_unit"], self.precision("Product Price"))
            for name in ("quantity", "product_uom_qty"):
                if name in line:
                    line[name] = round(line[name], self.precision("Product Unit of Measure"))

    def recompute(self, model, rid):
        if model not in ("account.move", "sale.order"):
            return
        record = self.records[model][rid]
        line_model, back = ONE2MANY["invoice_line_ids" if model == "account.move"
                                    else "order_line"]
        quantity_field = "quantity" if model == "account.move" else "product_uom_qty"
        tax_field = "tax_ids" if model == "account.move" or self.version >= 19 else "tax_id"
        untaxed = tax = 0.0
        ids = []
        for line in self.lines(line_model, back, rid):
            subtotal = round(line[quantity_field] * line["price_unit"], 2)
            line["price_subtotal"] = subtotal
            untaxed += subtotal
            for tax_id in line.get(tax_field, []):
                tax += subtotal * self.records["account.tax"][tax_id]["amount"] / 100
            ids.append(line["id"])
        record.update({"amount_untaxed": round(untaxed, 2), "amount_tax": round(tax, 2),
                       "amount_total": round(untaxed + tax, 2),
                       ("invoice_line_ids" if model == "account.move" else "order_line"): ids})

    def m_write(self, uid, model, ids, vals):
        self.check_fields(model, vals.keys())
        for rid in ids:
            record = self.records[model].get(rid)
            if record is None:
                raise missing(model, [rid], uid)
            if model == "account.move" and record["state"] == "posted":
                raise user_error("You cannot modify a posted journal entry (%s)."
                                 % record["name"])
            for name, value in vals.items():
                if name in ONE2MANY:
                    line_model, back = ONE2MANY[name]
                    self.apply_o2m(uid, model, rid, name, line_model, back, value)
                elif name in MANY2MANY:
                    record[name] = self.apply_m2m(record.get(name, []), value)
                else:
                    record[name] = value
            self.recompute(model, rid)
        return True

    def m_unlink(self, uid, model, ids):
        for rid in ids:
            record = self.records[model].get(rid)
            if record is None:
                raise missing(model, [rid], uid)
            if model == "account.move" and record["state"] == "posted":
                raise user_error("You cannot delete an entry which has been posted once.")
        for rid in ids:
            self.records[model].pop(rid)
            for name, (line_model, back) in ONE2MANY.items():
                for line in self.lines(line_model, back, rid):
                    self.records[line_model].pop(line["id"], None)
        return True

    def m_action_post(self, uid, model, ids):
        if model != "account.move":
            raise OdooError("builtins.AttributeError",
                            "The method '%s.action_post' does not exist" % model, 1, 404)
        for rid in ids:
            record = self.records[model][rid]
            if record["state"] == "posted":
                raise user_error("The entry %s is already posted." % record["name"])
            prefix = "RINV" if record["move_type"] == "out_refund" else "INV"
            record["state"] = "posted"
            record["name"] = self.next_name(prefix, prefix + "/2026/%05d")
        return False

    def m_context_get(self, uid, model):
        return {"lang": "en_US", "tz": "UTC", "uid": uid}


class Handler(BaseHTTPRequestHandler):
    server_version = "Werkzeug/3.0"
    odoo = None  # set in main

    def log_message(self, format, *args):
        sys.stderr.write("fake-odoo %d: %s\n" % (self.odoo.version, format % args))

    def answer(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def version_info(self):
        return [self.odoo.version, 0, 0, "final", 0, ""]

    def version_dict(self):
        return {"server_version": "%d.0" % self.odoo.version,
                "server_version_info": self.version_info(),
                "server_serie": "%d.0" % self.odoo.version, "protocol_version": 1}

    def deprecated(self, endpoint):
        if self.odoo.version >= 19:
            sys.stderr.write(
                "fake-odoo 19: WARNING: The /xmlrpc, /xmlrpc/2 and /jsonrpc endpoints are "
                "deprecated in Odoo 19 and scheduled for removal in Odoo 20 (%s)\n" % endpoint)

    def do_GET(self):
        if self.path == "/web/version" and self.odoo.version >= 19:
            return self.answer(200, json.dumps({"version_info": self.version_info(),
                                                "version": "%d.0" % self.odoo.version}))
        match = re.fullmatch(r"/fake/records/([a-z._]+)", self.path)
        if match:
            with self.odoo.lock:
                records = list(self.odoo.records.get(match.group(1), {}).values())
            return self.answer(200, json.dumps(records))
        self.answer(404, "<h1>Not Found</h1>", "text/html")

    def do_POST(self):
        path = self.path.split("?")[0]
        try:
            if path in ("/xmlrpc/2/common", "/xmlrpc/2/object"):
                return self.xmlrpc(path.rsplit("/", 1)[1])
            if path == "/jsonrpc":
                return self.jsonrpc()
            if path.startswith("/json/2/"):
                return self.json2(path)
            if path == "/web/webclient/version_info":
                return self.web_json(lambda params: self.version_dict())
            if path == "/web/session/authenticate":
                return self.web_json(self.session_authenticate)
            if path == "/fake/inject":
                injection = json.loads(self.body())
                injection.setdefault("times", 1)
                with self.odoo.lock:
                    self.odoo.injections.append(injection)
                return self.answer(200, "{}")
            if path == "/fake/precision":
                change = json.loads(self.body())
                with self.odoo.lock:
                    for record in self.odoo.records["decimal.precision"].values():
                        if record["name"] == change["name"]:
                            record["digits"] = change["digits"]
                return self.answer(200, "{}")
        except Exception:  # a bug of the fake: show it
            traceback.print_exc()
            return self.answer(500, "fake-odoo error", "text/plain")
        self.answer(404, "<h1>Not Found</h1>", "text/html")

    # --- XML-RPC ------------------------------------------------------------------------
    def xmlrpc(self, service):
        self.deprecated("/xmlrpc/2/" + service)
        params, method = xmlrpc.client.loads(self.body(), use_builtin_types=True)
        try:
            result = self.dispatch(service, method, list(params))
            body = xmlrpc.client.dumps((false_for_none(result),), methodresponse=True)
        except OdooError as e:
            if e.http_status == 500 and e.name == "fake.HTTP500":
                return self.answer(500, "Internal Server Error", "text/plain")
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(e.xmlrpc_code, e.message))
        self.answer(200, body, "text/xml; charset=utf-8")

    def dispatch(self, service, method, args):
        odoo = self.odoo
        if service == "common":
            if method == "version":
                return self.version_dict()
            if method in ("authenticate", "login"):
                return odoo.authenticate(*args[:3])
            raise OdooError("builtins.NameError", "Method not available %s" % method, 1, 404)
        if service == "object" and method == "execute_kw":
            db, uid, password, model, name = args[:5]
            call_args = args[5] if len(args) > 5 else []
            kwargs = args[6] if len(args) > 6 else {}
            odoo.check(db, uid, password)
            return odoo.execute(uid, model, name, call_args, kwargs)
        raise OdooError("builtins.NameError", "Method not available %s" % method, 1, 404)

    # --- JSON-RPC -----------------------------------------------------------------------
    def jsonrpc(self):
        self.deprecated("/jsonrpc")
        request = json.loads(self.body())
        params = request.get("params", {})
        try:
            result = self.dispatch(params.get("service"), params.get("method"),
                                   params.get("args", []))
            response = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
        except OdooError as e:
            if e.name == "fake.HTTP500":
                return self.answer(500, "Internal Server Error", "text/plain")
            response = {"jsonrpc": "2.0", "id": request.get("id"), "error": error_body(e)}
        self.answer(200, json.dumps(response))

    def web_json(self, handler):
        request = json.loads(self.body() or b"{}")
        try:
            result = handler(request.get("params", {}))
            response = {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
        except OdooError as e:
            response = {"jsonrpc": "2.0", "id": request.get("id"), "error": error_body(e)}
        self.answer(200, json.dumps(response))

    def session_authenticate(self, params):
        uid = self.odoo.authenticate(params.get("db"), params.get("login"),
                                     params.get("password"))
        if not uid:
            raise access_denied()
        result = self.version_dict()
        result.update({"uid": uid, "db": self.odoo.database,
                       "user_context": {"lang": "en_US", "tz": "UTC", "uid": uid}})
        return result

    # --- JSON-2 -------------------------------------------------------------------------
    def json2(self, path):
        if self.odoo.version == 18:
            # The web client's /json/<path> route: a redirect to the login page.
            return self.answer(303, "", "text/html",
                               [("Location", "/web/login?redirect=%s" % path)])
        if self.odoo.version < 18:
            return self.answer(404, "<h1>Not Found</h1>", "text/html")
        match = re.fullmatch(r"/json/2/([a-z._]+)/([a-z_]+)", path)
        auth = self.headers.get("Authorization", "")
        uid = self.odoo.uid_of_key(auth[7:]) if auth.lower().startswith("bearer ") else None
        if uid is None:
            return self.answer(401, json.dumps(error_json2(OdooError(
                "werkzeug.exceptions.Unauthorized", "Invalid apikey", 0, 401))))
        database = self.headers.get("X-Odoo-Database")
        if database not in (None, self.odoo.database):
            return self.answer(404, json.dumps(error_json2(OdooError(
                "werkzeug.exceptions.NotFound", "database not found", 0, 404))))
        if not match:
            return self.answer(404, "<h1>Not Found</h1>", "text/html")
        model, method = match.groups()
        kwargs = json.loads(self.body() or b"{}")
        ids = kwargs.pop("ids", None)
        kwargs.pop("context", None)
        args = []
        if ids is not None:
            args.append(ids)
        try:
            result = self.odoo.execute(uid, model, method, args, kwargs)
        except OdooError as e:
            if e.name == "fake.HTTP500":
                return self.answer(500, "Internal Server Error", "text/plain")
            return self.answer(e.http_status, json.dumps(error_json2(e)))
        self.answer(200, json.dumps(result))


def error_body(e):
    return {"code": 200, "message": "Odoo Server Error",
            "data": {"name": e.name, "debug": "Traceback (most recent call last):\n...\n%s: %s"
                     % (e.name, e.message), "message": e.message, "arguments": [e.message],
                     "context": {}}}


def error_json2(e):
    return {"name": e.name, "message": e.message, "arguments": [e.message], "context": {},
            "debug": "Traceback (most recent call last):\n...\n%s: %s" % (e.name, e.message)}


def false_for_none(value):
    """Odoo's XML-RPC marshaller writes None as False."""
    if value is None:
        return False
    if isinstance(value, list):
        return [false_for_none(v) for v in value]
    if isinstance(value, dict):
        return {k: false_for_none(v) for k, v in value.items()}
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", type=int, choices=[16, 17, 18, 19], required=True)
    parser.add_argument("--port", type=int, default=8069)
    parser.add_argument("--database", default="steward")
    args = parser.parse_args()
    Handler.odoo = Odoo(args.version, args.database)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    sys.stderr.write("fake-odoo %d: listening on 127.0.0.1:%d\n" % (args.version, args.port))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
