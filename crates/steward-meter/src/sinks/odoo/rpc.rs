//! Talking to Odoo 16–19: JSON-2 (`/json/2`, bearer API key, 19+), JSON-RPC (`/jsonrpc`) and
//! XML-RPC (`/xmlrpc/2`), behind one call shape: `call(model, method, ids, kwargs)`.
//!
//! The protocol is chosen from the server's version, never by probing `/json/2` (Odoo 18
//! answers that with a 303 to `/web/login`): `GET /web/version` (19+), else JSON-RPC
//! `common.version`. `auto` takes JSON-2 on 19 and later, JSON-RPC before. Redirects are never
//! followed, and an answer that is not the protocol's content type is an error naming what
//! came back.
//!
//! Every call is its own transaction on the server, so nothing here retries: a failure is
//! classified ([`OdooError::is_transient`]) and the outbox decides.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::store::redact_url;

/// Which wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// JSON-2 on 19+, JSON-RPC before.
    Auto,
    /// `POST /json/2/<model>/<method>` with a bearer API key (Odoo 19+).
    #[serde(rename = "json-2")]
    Json2,
    /// `POST /jsonrpc` (Odoo 16–19; deprecated in 19).
    Jsonrpc,
    /// `POST /xmlrpc/2/{common,object}` (Odoo 16–19; deprecated in 19).
    Xmlrpc,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Json2 => "json-2",
            Self::Jsonrpc => "jsonrpc",
            Self::Xmlrpc => "xmlrpc",
        })
    }
}

/// What went wrong talking to Odoo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdooError {
    /// Unreachable, timed out, or a 5xx: worth retrying.
    #[error("{0}")]
    Transport(String),
    /// The login or API key was refused.
    #[error("Odoo refused the credentials of {login:?}: {message}")]
    Credentials {
        /// The login.
        login: String,
        /// What Odoo said.
        message: String,
    },
    /// Odoo raised an exception (`odoo.exceptions.AccessError`, `MissingError`, `UserError`,
    /// `ValueError`, …).
    #[error("{model}.{method}: {name}: {message}")]
    Server {
        /// The model called.
        model: String,
        /// The method called.
        method: String,
        /// The exception class, when the protocol says (`odoo.exceptions.AccessError`), or
        /// the XML-RPC fault code.
        name: String,
        /// Its message.
        message: String,
    },
    /// The answer was not what the protocol promises (HTML, a redirect, unparsable).
    #[error("{0}")]
    Protocol(String),
}

impl OdooError {
    /// Whether retrying later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            // A fault raised by the database layer (a lost connection, a serialization
            // failure) is Odoo's transient trouble, not a refusal of the record.
            Self::Server { name, message, .. } => {
                name.starts_with("psycopg2")
                    || message.contains("could not serialize access")
                    || message.contains("server closed the connection")
            }
            _ => false,
        }
    }
}

/// How to reach one Odoo database.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://erp.example.net` (no path).
    pub url: String,
    /// The database.
    pub database: String,
    /// The login (a bot user).
    pub login: String,
    /// Its API key (or password, on RPC).
    pub api_key: String,
    /// Which protocol.
    pub protocol: Protocol,
    /// Per request.
    pub timeout: Duration,
}

/// A session: the server's version, the protocol in use and (RPC) the uid.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    shown: String,
    database: String,
    login: String,
    api_key: String,
    /// The major version (`server_version_info[0]`).
    pub version: u32,
    /// The protocol in use.
    pub protocol: Protocol,
    uid: i64,
    timeout: Duration,
    http: reqwest::Client,
}

/// An `http`/`https` base URL without a trailing slash.
pub fn base_url(url: &str) -> Result<String, String> {
    let parsed = super::super::http::parse_url(url)?;
    if !parsed.path().trim_end_matches('/').is_empty() || parsed.query().is_some() {
        return Err(format!(
            "{:?} must be the server's address only (https://erp.example.net), without a path",
            redact_url(url)
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Client {
    /// Connects: reads the version, picks the protocol, authenticates (RPC) once.
    pub async fn connect(settings: &Settings) -> Result<Self, OdooError> {
        let base = base_url(&settings.url).map_err(OdooError::Protocol)?;
        let http = super::super::http::client(settings.timeout).map_err(OdooError::Protocol)?;
        let mut client = Self {
            shown: redact_url(&base),
            base,
            database: settings.database.clone(),
            login: settings.login.clone(),
            api_key: settings.api_key.clone(),
            version: 0,
            protocol: settings.protocol,
            uid: 0,
            timeout: settings.timeout,
            http,
        };
        client.version = client.server_version().await?;
        client.protocol = match (settings.protocol, client.version) {
            (Protocol::Auto, v) if v >= 19 => Protocol::Json2,
            (Protocol::Auto, _) => Protocol::Jsonrpc,
            (Protocol::Json2, v) if v < 19 => {
                return Err(OdooError::Protocol(format!(
                    "{} is Odoo {v}: JSON-2 needs Odoo 19 or later; use protocol jsonrpc or \
                     xmlrpc (or auto)",
                    client.shown
                )));
            }
            (chosen, _) => chosen,
        };
        if client.version >= 19 && matches!(client.protocol, Protocol::Jsonrpc | Protocol::Xmlrpc) {
            tracing::warn!(odoo = %client.shown, protocol = %client.protocol,
                "Odoo 19 deprecates /xmlrpc and /jsonrpc (removal is planned); use protocol \
                 json-2 (or auto) with an API key");
        }
        if client.protocol == Protocol::Json2 {
            // No uid needed; check the key now rather than at the first write.
            client
                .call("res.users", "context_get", None, Map::new())
                .await?;
        } else {
            client.uid = client.authenticate().await?;
        }
        Ok(client)
    }

    /// `server_version_info[0]`: `GET /web/version` (19+), else JSON-RPC `common.version`.
    async fn server_version(&self) -> Result<u32, OdooError> {
        let url = format!("{}/web/version", self.base);
        let answer = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if answer.status().is_success()
            && let Ok(body) = answer.json::<Value>().await
            && let Some(major) = body["version_info"][0].as_u64()
        {
            return Ok(major as u32);
        }
        let info = self.jsonrpc("common", "version", json!([])).await?;
        info["server_version_info"][0]
            .as_u64()
            .map(|v| v as u32)
            .ok_or_else(|| {
                OdooError::Protocol(format!(
                    "{}: common.version has no server_version_info: {info}",
                    self.shown
                ))
            })
    }

    async fn authenticate(&self) -> Result<i64, OdooError> {
        let args = json!([self.database, self.login, self.api_key, {}]);
        let uid = match self.protocol {
            Protocol::Xmlrpc => self.xmlrpc("common", "authenticate", &args).await?,
            _ => self.jsonrpc("common", "authenticate", args).await?,
        };
        match uid.as_i64() {
            Some(uid) if uid > 0 => Ok(uid),
            _ => Err(OdooError::Credentials {
                login: self.login.clone(),
                message: format!(
                    "authenticate on database {:?} answered {uid} (wrong login, API key or \
                     database)",
                    self.database
                ),
            }),
        }
    }

    /// Calls `model.method` on the records `ids` (when it is a record method) with keyword
    /// arguments `kwargs`, on whichever protocol the session uses.
    pub async fn call(
        &self,
        model: &str,
        method: &str,
        ids: Option<&[i64]>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, OdooError> {
        let named = |e: OdooError| match e {
            OdooError::Server { name, message, .. } => OdooError::Server {
                model: model.to_owned(),
                method: method.to_owned(),
                name,
                message,
            },
            other => other,
        };
        match self.protocol {
            Protocol::Json2 | Protocol::Auto => {
                let mut body = kwargs;
                if let Some(ids) = ids {
                    body.insert("ids".to_owned(), json!(ids));
                }
                self.json2(model, method, &Value::Object(body))
                    .await
                    .map_err(named)
            }
            Protocol::Jsonrpc | Protocol::Xmlrpc => {
                let positional = match ids {
                    Some(ids) => json!([ids]),
                    None => json!([]),
                };
                let args = json!([
                    self.database,
                    self.uid,
                    self.api_key,
                    model,
                    method,
                    positional,
                    Value::Object(kwargs)
                ]);
                let answer = if self.protocol == Protocol::Xmlrpc {
                    self.xmlrpc("object", "execute_kw", &args).await
                } else {
                    self.jsonrpc("object", "execute_kw", args).await
                };
                answer.map_err(named)
            }
        }
    }

    fn transport(&self, e: reqwest::Error) -> OdooError {
        OdooError::Transport(super::super::http::failed(&self.shown, self.timeout, e))
    }

    /// The body of a 2xx answer of content type `want`, or the error it is.
    async fn body(
        &self,
        what: &str,
        answer: reqwest::Response,
        want: &str,
    ) -> Result<String, OdooError> {
        let status = answer.status();
        let kind = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let location = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status.is_server_error() {
            let quoted = super::super::http::quote(answer).await;
            return Err(OdooError::Transport(format!(
                "{}{what} answered {status}{quoted}",
                self.shown
            )));
        }
        if status.is_redirection() {
            return Err(OdooError::Protocol(format!(
                "{}{what} answered {status} (a redirect to {}): not an Odoo API answer; \
                 is this the right server and version?",
                self.shown,
                location.as_deref().unwrap_or("?")
            )));
        }
        if !kind.starts_with(want) && status.is_success() {
            return Err(OdooError::Protocol(format!(
                "{}{what} answered {status} with {kind:?}, not {want}",
                self.shown
            )));
        }
        answer
            .text()
            .await
            .map_err(|e| OdooError::Transport(format!("{}{what}: {e}", self.shown)))
    }

    async fn jsonrpc(&self, service: &str, method: &str, args: Value) -> Result<Value, OdooError> {
        let url = format!("{}/jsonrpc", self.base);
        let request = json!({"jsonrpc": "2.0", "method": "call", "id": 1,
            "params": {"service": service, "method": method, "args": args}});
        let answer = self
            .http
            .post(&url)
            .json(&request)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = answer.status();
        let text = self.body("/jsonrpc", answer, "application/json").await?;
        if !status.is_success() {
            return Err(OdooError::Protocol(format!(
                "{}/jsonrpc answered {status}: {}",
                self.shown,
                text.chars().take(200).collect::<String>()
            )));
        }
        let mut body: Value = serde_json::from_str(&text)
            .map_err(|e| OdooError::Protocol(format!("{}/jsonrpc: not JSON: {e}", self.shown)))?;
        if let Some(error) = body.get("error") {
            let data = &error["data"];
            let name = data["name"].as_str().unwrap_or("error").to_owned();
            let message = data["message"]
                .as_str()
                .or(error["message"].as_str())
                .unwrap_or("?")
                .to_owned();
            if name.ends_with("AccessDenied") {
                return Err(OdooError::Credentials {
                    login: self.login.clone(),
                    message,
                });
            }
            return Err(OdooError::Server {
                model: String::new(),
                method: method.to_owned(),
                name,
                message,
            });
        }
        Ok(body["result"].take())
    }

    async fn json2(&self, model: &str, method: &str, body: &Value) -> Result<Value, OdooError> {
        let url = format!("{}/json/2/{model}/{method}", self.base);
        let answer = self
            .http
            .post(&url)
            .bearer_auth(&self.api_key)
            .header("X-Odoo-Database", &self.database)
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = answer.status();
        let text = self
            .body(
                &format!("/json/2/{model}/{method}"),
                answer,
                "application/json",
            )
            .await?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| OdooError::Protocol(format!("{}/json/2: not JSON: {e}", self.shown)));
        }
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let name = error["name"].as_str().unwrap_or("").to_owned();
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(OdooError::Credentials {
                login: self.login.clone(),
                message,
            });
        }
        Err(OdooError::Server {
            model: model.to_owned(),
            method: method.to_owned(),
            name: if name.is_empty() {
                format!("HTTP {status}")
            } else {
                name
            },
            message,
        })
    }

    async fn xmlrpc(&self, service: &str, method: &str, args: &Value) -> Result<Value, OdooError> {
        let url = format!("{}/xmlrpc/2/{service}", self.base);
        let params = match args {
            Value::Array(items) => items.iter().map(to_xmlrpc).collect::<Result<Vec<_>, _>>(),
            other => Err(format!("XML-RPC arguments must be a list, not {other}")),
        }
        .map_err(OdooError::Protocol)?;
        let call = dxr::MethodCall {
            name: method.into(),
            params,
        };
        let xml = call
            .to_xml()
            .map_err(|e| OdooError::Protocol(format!("encoding an XML-RPC call: {e}")))?;
        let answer = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(xml)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let text = self
            .body(&format!("/xmlrpc/2/{service}"), answer, "text/xml")
            .await?;
        if let Ok(response) = dxr::MethodResponse::from_xml(&text) {
            return from_xmlrpc(&response.value).map_err(OdooError::Protocol);
        }
        match dxr::FaultResponse::from_xml(&text) {
            Ok(dxr::FaultResponse { fault }) => {
                // Odoo's fault codes: 3 access denied, 4 access error, 2 user error or
                // warning, 1 anything else.
                if fault.code() == 3 {
                    return Err(OdooError::Credentials {
                        login: self.login.clone(),
                        message: fault.string().to_owned(),
                    });
                }
                let name = match fault.code() {
                    4 => "odoo.exceptions.AccessError".to_owned(),
                    2 => "odoo.exceptions.UserError".to_owned(),
                    code => format!("fault {code}"),
                };
                Err(OdooError::Server {
                    model: String::new(),
                    method: method.to_owned(),
                    name,
                    message: fault.string().to_owned(),
                })
            }
            Err(e) => Err(OdooError::Protocol(format!(
                "{}/xmlrpc/2/{service}: not an XML-RPC answer ({e}): {}",
                self.shown,
                text.chars().take(200).collect::<String>()
            ))),
        }
    }
}

/// JSON as an XML-RPC value (`null` becomes `false`, as Odoo writes it).
fn to_xmlrpc(value: &Value) -> Result<dxr::Value, String> {
    Ok(match value {
        Value::Null => dxr::Value::Boolean(false),
        Value::Bool(b) => dxr::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(small) => dxr::Value::Integer(small),
                Err(_) => dxr::Value::Long(i),
            },
            (None, Some(f)) => dxr::Value::Double(f),
            _ => return Err(format!("number {n} has no XML-RPC form")),
        },
        Value::String(s) => dxr::Value::String(s.clone()),
        Value::Array(items) => {
            dxr::Value::Array(items.iter().map(to_xmlrpc).collect::<Result<Vec<_>, _>>()?)
        }
        Value::Object(map) => dxr::Value::Struct(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), to_xmlrpc(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// An XML-RPC value as JSON.
fn from_xmlrpc(value: &dxr::Value) -> Result<Value, String> {
    Ok(match value {
        dxr::Value::Integer(i) => json!(i),
        dxr::Value::Long(i) => json!(i),
        dxr::Value::Boolean(b) => json!(b),
        dxr::Value::String(s) => json!(s),
        dxr::Value::Double(f) => json!(f),
        dxr::Value::Nil => Value::Null,
        dxr::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(from_xmlrpc)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        dxr::Value::Struct(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_xmlrpc(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("an XML-RPC value Steward does not read: {other:?}")),
    })
}
