//! OpenStack access for Steward, on the `openstack_sdk` crate.
//!
//! One place where Steward talks to OpenStack APIs: a [`Cloud`] is a session opened from
//! `clouds.yaml` (the usual search path, `OS_CLIENT_CONFIG_PATH`, `OS_CLIENT_CONFIG_FILE`, or an
//! explicit file) with the SDK's own authentication, token renewal and catalog. Responses are read into narrow records
//! that hold only what Steward uses, so SDK changes stay inside this crate.
//!
//! ```no_run
//! # async fn example() -> Result<(), steward_cloud::CloudError> {
//! let cloud = steward_cloud::Cloud::connect("steward-test", None).await?;
//! for image in cloud.images().await? {
//!     println!("{} {} {}", image.id, image.name, image.status);
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod inventory;
mod listing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub use http::Method;
use openstack_sdk::AsyncOpenStack;
use openstack_sdk::api::image::v2::image::{
    create, deactivate, delete, file, get, import, list, patch,
};
use openstack_sdk::api::{Pagination, QueryAsync, ignore, paged, raw_with_body};
use openstack_sdk::config::ConfigFile;
use openstack_sdk::types::BoxedAsyncRead;
pub use openstack_sdk::types::ServiceType;
use serde_json::Value;

/// Failures talking to OpenStack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    /// `clouds.yaml` could not be read.
    #[error("cannot read the clouds.yaml configuration")]
    Config(#[source] openstack_sdk::config::ConfigError),
    /// The cloud is not in `clouds.yaml`.
    #[error(
        "cloud {0:?} is not in clouds.yaml (searched OS_CLIENT_CONFIG_FILE, OS_CLIENT_CONFIG_PATH, ./clouds.yaml, ~/.config/openstack, /etc/openstack)"
    )]
    UnknownCloud(String),
    /// The cloud is to come from `OS_*` variables (an openrc), but `OS_AUTH_URL` is not set.
    #[error(
        "no cloud named and no openrc in the environment: give --os-cloud NAME (or set OS_CLOUD) \
         for a clouds.yaml entry, or source an openrc (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, \
         OS_PROJECT_NAME, …)"
    )]
    NoCloud,
    /// The clouds file named explicitly does not exist.
    #[error("{path}: no such clouds file (named by {named_by})")]
    MissingCloudsFile {
        /// The file.
        path: String,
        /// Who named it.
        named_by: &'static str,
    },
    /// Authentication or the API call failed.
    #[error("{what}")]
    Api {
        /// What Steward was doing.
        what: String,
        /// The SDK's error.
        #[source]
        source: openstack_sdk::OpenStackError,
    },
    /// A request could not be built.
    #[error("cannot build the {0} request")]
    Request(String),
    /// The API answered something Steward cannot read.
    #[error("unexpected answer from {what}: {detail}")]
    Unexpected {
        /// The call.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// Attempts of an idempotent call (list, get, patch, delete, deactivate) before giving up.
const ATTEMPTS: u32 = 3;

/// Whether an API error is worth retrying: a 5xx answer or a failed connection.
fn transient(error: &openstack_sdk::api::ApiError<openstack_sdk::RestError>) -> bool {
    use openstack_sdk::api::ApiError;
    match error {
        ApiError::OpenStack { status, .. } | ApiError::OpenStackService { status, .. } => {
            status.is_server_error()
        }
        ApiError::Client { source } => {
            matches!(source, openstack_sdk::RestError::Communication { .. })
        }
        _ => false,
    }
}

/// Runs an idempotent call, retrying transient failures (500 ms, then 1 s); never use it for
/// calls that create something, where a retry could create it twice.
async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
            Output = Result<T, openstack_sdk::api::ApiError<openstack_sdk::RestError>>,
        >,
{
    let mut delay = std::time::Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < ATTEMPTS && transient(&error) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(error) => {
                return Err(CloudError::Api {
                    what: what.to_owned(),
                    source: error.into(),
                });
            }
        }
    }
}

/// One task Glance ran for an image (an import), as `GET /v2/images/{id}/tasks` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ImageTask {
    /// Task id.
    pub id: String,
    /// `pending`, `processing`, `success`, `failure`.
    pub status: String,
    /// Why it failed, in Glance's words.
    #[serde(default)]
    pub message: Option<String>,
}

/// An image as Steward reads it from Glance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageRecord {
    /// Id.
    pub id: String,
    /// Name (empty when unset).
    pub name: String,
    /// `queued`, `saving`, `importing`, `active`, `deactivated`, `killed`, `deleted`, …
    pub status: String,
    /// `public`, `private`, `community`, `shared`.
    pub visibility: String,
    /// `os_hidden`.
    pub hidden: bool,
    /// GiB.
    pub min_disk: u64,
    /// MiB.
    pub min_ram: u64,
    /// Bytes stored, once uploaded.
    pub size: Option<u64>,
    /// Glance's multihash algorithm (`sha512`).
    pub os_hash_algo: Option<String>,
    /// Glance's multihash value.
    pub os_hash_value: Option<String>,
    /// Tags.
    pub tags: BTreeSet<String>,
    /// Every other property, as text (Glance's own `os_glance_*` bookkeeping left out).
    pub properties: BTreeMap<String, String>,
    /// `os_glance_failed_import`: the stores an import failed for (`None` when empty).
    pub failed_import: Option<String>,
    /// `os_glance_importing_to_stores`: the stores an import is still running for.
    pub importing_to_stores: Option<String>,
    /// When Glance created it (`YYYY-MM-DDTHH:MM:SSZ`, so text order is time order).
    pub created_at: Option<String>,
}

/// Fields of a Glance image that are not free-form properties.
const CORE_FIELDS: &[&str] = &[
    "checksum",
    "container_format",
    "created_at",
    "direct_url",
    "disk_format",
    "file",
    "id",
    "locations",
    "min_disk",
    "min_ram",
    "name",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "owner",
    "protected",
    "schema",
    "self",
    "size",
    "status",
    "stores",
    "tags",
    "updated_at",
    "virtual_size",
    "visibility",
];

impl ImageRecord {
    /// Reads one image object of the Glance v2 API.
    pub fn from_json(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let number = |k: &str| obj.get(k).and_then(Value::as_u64);
        let properties = obj
            .iter()
            .filter(|(k, _)| !CORE_FIELDS.contains(&k.as_str()) && !k.starts_with("os_glance_"))
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                Value::Null => None,
                other => Some((k.clone(), other.to_string())),
            })
            .collect();
        Some(Self {
            id: text("id")?,
            name: text("name").unwrap_or_default(),
            status: text("status").unwrap_or_default(),
            visibility: text("visibility").unwrap_or_default(),
            hidden: obj
                .get("os_hidden")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            min_disk: number("min_disk").unwrap_or(0),
            min_ram: number("min_ram").unwrap_or(0),
            size: number("size"),
            os_hash_algo: text("os_hash_algo"),
            os_hash_value: text("os_hash_value"),
            created_at: text("created_at"),
            failed_import: text("os_glance_failed_import").filter(|s| !s.trim().is_empty()),
            importing_to_stores: text("os_glance_importing_to_stores")
                .filter(|s| !s.trim().is_empty()),
            tags: obj
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            properties,
        })
    }
}

/// An image to create (queued; data comes by import or upload).
#[derive(Debug, Clone)]
pub struct NewImage<'a> {
    /// A fixed image id (osism's `versions[].id`); Glance picks one when `None`, and answers
    /// 409 when the id is taken (also by a deleted image: Glance never reuses ids).
    pub id: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Glance `disk_format` (`qcow2`, `raw`, …); the container format is `bare`.
    pub disk_format: &'a str,
    /// GiB.
    pub min_disk: u64,
    /// MiB.
    pub min_ram: u64,
    /// Tags.
    pub tags: &'a BTreeSet<String>,
    /// Properties.
    pub properties: &'a BTreeMap<String, String>,
}

/// One change of an image update: a core field or a property set to a value, or removed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageChange {
    /// `name`, `visibility`, `os_hidden`, `min_disk`, `min_ram`, `tags`, or a property name.
    pub field: String,
    /// The new value; `None` removes a property.
    pub value: Option<Value>,
}

/// Core fields an update replaces (properties are added or removed instead).
const REPLACED_FIELDS: &[&str] = &[
    "name",
    "visibility",
    "os_hidden",
    "min_disk",
    "min_ram",
    "tags",
];

/// The JSON patch for a list of changes (Glance's `openstack-images-v2.1-json-patch`).
pub fn json_patch(changes: &[ImageChange]) -> Value {
    Value::Array(
        changes
            .iter()
            .map(|c| match (&c.value, REPLACED_FIELDS.contains(&c.field.as_str())) {
                (Some(v), true) => serde_json::json!({"op": "replace", "path": format!("/{}", c.field), "value": v}),
                (Some(v), false) => serde_json::json!({"op": "add", "path": format!("/{}", c.field), "value": v}),
                (None, _) => serde_json::json!({"op": "remove", "path": format!("/{}", c.field)}),
            })
            .collect(),
    )
}

/// The cloud name that means "from the `OS_*` environment" (an openrc), as the Python
/// OpenStack tooling calls it: what the CLIs use when neither `--os-cloud` nor `OS_CLOUD` names
/// a clouds.yaml entry.
pub const ENV_CLOUD: &str = "envvars";

/// Items per page of an admin listing (nova's default `max_limit`).
pub const PAGE_SIZE: usize = 1000;

/// A session with one cloud.
#[derive(Debug)]
pub struct Cloud {
    session: AsyncOpenStack,
    /// Services whose version document was read (once per session, see [`Cloud::list`]).
    discovered: std::sync::Mutex<BTreeSet<String>>,
}

impl Cloud {
    /// Opens a session with `cloud` from `clouds.yaml` (`clouds_file` adds an explicit file;
    /// without one, `OS_CLIENT_CONFIG_FILE` does, as in the OpenStack client).
    pub async fn connect(cloud: &str, clouds_file: Option<&Path>) -> Result<Self, CloudError> {
        let from_env = std::env::var_os("OS_CLIENT_CONFIG_FILE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        let (file, named_by) = match (clouds_file, &from_env) {
            (Some(f), _) => (Some(f), "the given clouds file"),
            (None, Some(f)) => (Some(f.as_path()), "OS_CLIENT_CONFIG_FILE"),
            (None, None) => (None, ""),
        };
        if let Some(f) = file
            && !f.is_file()
        {
            return Err(CloudError::MissingCloudsFile {
                path: f.display().to_string(),
                named_by,
            });
        }
        let profile = if cloud == ENV_CLOUD {
            // The cloud an openrc describes: `OS_AUTH_URL`, `OS_USERNAME`/`OS_USER_ID`,
            // `OS_PASSWORD`, `OS_PROJECT_NAME`/`OS_PROJECT_ID`, the domain variables,
            // `OS_REGION_NAME`, `OS_INTERFACE`, application credentials (with `OS_AUTH_TYPE`).
            if std::env::var_os("OS_AUTH_URL").is_none_or(|v| v.is_empty()) {
                return Err(CloudError::NoCloud);
            }
            openstack_sdk::config::CloudConfig::from_env().map_err(CloudError::Config)?
        } else {
            let config = ConfigFile::new_with_user_specified_configs(file, None::<&Path>)
                .map_err(CloudError::Config)?;
            config
                .get_cloud_config(cloud)
                .map_err(CloudError::Config)?
                .ok_or_else(|| CloudError::UnknownCloud(cloud.to_owned()))?
        };
        let session = AsyncOpenStack::builder(&profile)
            .disable_auth_cache(true)
            .connect()
            .await
            .map_err(|source| CloudError::Api {
                what: format!("authenticating with cloud {cloud}"),
                source,
            })?;
        session
            .discover_service_endpoint(&ServiceType::Image)
            .await
            .map_err(|source| CloudError::Api {
                what: "finding the image service".to_owned(),
                source,
            })?;
        Ok(Self {
            session,
            discovered: std::sync::Mutex::new(BTreeSet::from([ServiceType::Image.to_string()])),
        })
    }

    /// Reads `service`'s version document once per session, so that versioned paths resolve
    /// (neutron's and octavia's catalog URLs name no version).
    async fn discover(&self, service: &ServiceType) -> Result<(), CloudError> {
        let name = service.to_string();
        if self.discovered.lock().is_ok_and(|d| d.contains(&name)) {
            return Ok(());
        }
        self.session
            .discover_service_endpoint(service)
            .await
            .map_err(|source| CloudError::Api {
                what: format!("finding the {name} service"),
                source,
            })?;
        if let Ok(mut d) = self.discovered.lock() {
            d.insert(name);
        }
        Ok(())
    }

    /// One admin listing, all pages, read into records (see [`inventory`]) page by page, so
    /// that memory holds the narrow records and one page of JSON, never the whole listing's.
    /// Pages are requested with `limit` and `marker` (the last item's id) until one comes back
    /// empty: a service whose `max_limit` is below [`PAGE_SIZE`] still yields every item.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        listing: listing::Listing,
    ) -> Result<Vec<T>, CloudError> {
        let what = format!("listing {}", listing.path);
        let key = listing.key;
        self.discover(&listing.service).await?;
        let mut records = Vec::new();
        let mut marker: Option<String> = None;
        let mut seen = 0usize;
        loop {
            let mut page = listing.clone().with("limit", PAGE_SIZE.to_string());
            if let Some(m) = &marker {
                page = page.with("marker", m.clone());
            }
            let items: Vec<Value> = retrying(&what, || page.query_async(&self.session)).await?;
            let next = items
                .last()
                .and_then(|item| item.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            records.extend(inventory::parse_items::<T>(&items, key).map_err(|e| {
                CloudError::Unexpected {
                    what: what.clone(),
                    detail: format!("{e} (page from item {seen})"),
                }
            })?);
            seen += items.len();
            match next {
                Some(id) if marker.as_deref() != Some(id.as_str()) => marker = Some(id),
                _ => break,
            }
        }
        Ok(records)
    }

    /// One unpaged GET (a server's instance actions, the volume types), read into records.
    async fn list_once<T: serde::de::DeserializeOwned>(
        &self,
        listing: listing::Listing,
    ) -> Result<Vec<T>, CloudError> {
        let what = format!("listing {}", listing.path);
        let key = listing.key;
        self.discover(&listing.service).await?;
        let items: Vec<Value> = retrying(&what, || listing.query_async(&self.session)).await?;
        inventory::parse_items(&items, key).map_err(|e| CloudError::Unexpected {
            what,
            detail: e.to_string(),
        })
    }

    /// Every server of every project (admin); with `changes_since`, those changed since then,
    /// deleted ones included (nova's `changes-since` implies them), with exact
    /// `launched_at`/`terminated_at` and the embedded flavor (microversion 2.47).
    pub async fn servers(
        &self,
        changes_since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<inventory::Server>, CloudError> {
        let mut listing = listing::Listing::new(
            ServiceType::Compute,
            "servers/detail",
            "servers",
            Some((2, 47)),
        )
        .with("all_tenants", "1");
        if let Some(t) = changes_since {
            listing = listing.with(
                "changes-since",
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
        }
        self.list(listing).await
    }

    /// One call: `method` on `path` of `service`, relative to its versioned endpoint
    /// (`lbaas/loadbalancers`, not `v2/lbaas/…`: Octavia answers `/v2/v2/…` with 200 and empty
    /// objects), with `body` as JSON; returns the answer's status and JSON body (`null` when empty or not JSON),
    /// whatever the status — a 501 from a provider that cannot do something is an answer,
    /// not an error. Transport and authentication failures are errors.
    pub async fn call(
        &self,
        service: ServiceType,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CloudError> {
        self.discover(&service).await?;
        let what = format!("{method} {service} {path}");
        let endpoint = listing::Call {
            service,
            method,
            path: path.to_owned(),
            body: body.map(|b| serde_json::to_vec(b).unwrap_or_default()),
        };
        let response = openstack_sdk::api::raw(endpoint)
            .skip_error_check(true)
            .query_async(&self.session)
            .await
            .map_err(|e| CloudError::Api {
                what: what.clone(),
                source: e.into(),
            })?;
        let status = response.status().as_u16();
        let json = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// Every flavor, public and private (admin), with its extra specs (microversion 2.61).
    pub async fn flavors(&self) -> Result<Vec<inventory::Flavor>, CloudError> {
        let listing = listing::Listing::new(
            ServiceType::Compute,
            "flavors/detail",
            "flavors",
            Some((2, 61)),
        )
        .with("is_public", "None");
        self.list(listing).await
    }

    /// The instance actions of one server (deleted ones too), each with its steps.
    pub async fn instance_actions(
        &self,
        server_id: &str,
    ) -> Result<Vec<inventory::InstanceAction>, CloudError> {
        let path = format!("servers/{server_id}/os-instance-actions");
        let at = |path: String, key| {
            listing::Listing::new(ServiceType::Compute, path, key, Some((2, 58)))
        };
        let actions: Vec<inventory::InstanceAction> =
            self.list_once(at(path.clone(), "instanceActions")).await?;
        let mut detailed = Vec::with_capacity(actions.len());
        for action in actions {
            let endpoint = at(format!("{path}/{}", action.request_id), "instanceAction");
            let what = format!("reading {}", endpoint.path);
            let value: Value = retrying(&what, || endpoint.query_async(&self.session)).await?;
            let one = inventory::parse_items(std::slice::from_ref(&value), "instanceAction")
                .map_err(|e| CloudError::Unexpected {
                    what,
                    detail: e.to_string(),
                })?;
            detailed.extend(one);
        }
        Ok(detailed)
    }

    /// Every volume of every project (admin), with its type's name and id (microversion 3.63).
    pub async fn volumes(&self) -> Result<Vec<inventory::Volume>, CloudError> {
        let listing = listing::Listing::new(
            ServiceType::BlockStorage,
            "volumes/detail",
            "volumes",
            Some((3, 63)),
        );
        self.list(listing.with("all_tenants", "1")).await
    }

    /// Every volume type, private ones included (admin): the names for the ids notifications
    /// carry.
    pub async fn volume_types(&self) -> Result<Vec<inventory::VolumeType>, CloudError> {
        let listing =
            listing::Listing::new(ServiceType::BlockStorage, "types", "volume_types", None);
        self.list_once(listing.with("is_public", "None")).await
    }

    /// Every snapshot of every project (admin).
    pub async fn snapshots(&self) -> Result<Vec<inventory::Snapshot>, CloudError> {
        let listing = listing::Listing::new(
            ServiceType::BlockStorage,
            "snapshots/detail",
            "snapshots",
            None,
        );
        self.list(listing.with("all_tenants", "1")).await
    }

    /// Every floating IP (admin sees all projects').
    pub async fn floating_ips(&self) -> Result<Vec<inventory::FloatingIp>, CloudError> {
        let network = listing::Listing::new(
            ServiceType::Network,
            "floatingips",
            "floatingips",
            Some((2, 0)),
        );
        self.list(network).await
    }

    /// Every router (admin sees all projects').
    pub async fn routers(&self) -> Result<Vec<inventory::Router>, CloudError> {
        self.list(listing::Listing::new(
            ServiceType::Network,
            "routers",
            "routers",
            Some((2, 0)),
        ))
        .await
    }

    /// Every load balancer (admin sees all projects').
    pub async fn load_balancers(&self) -> Result<Vec<inventory::LoadBalancer>, CloudError> {
        let listing = listing::Listing::new(
            ServiceType::LoadBalancer,
            "lbaas/loadbalancers",
            "loadbalancers",
            Some((2, 0)),
        );
        self.list(listing).await
    }

    /// Every image the credentials can see, in every visibility, hidden ones included.
    pub async fn images(&self) -> Result<Vec<ImageRecord>, CloudError> {
        let mut records = Vec::new();
        let mut seen = BTreeSet::new();
        for hidden in [false, true] {
            let endpoint = list::Request::builder()
                .visibility("all")
                .os_hidden(hidden)
                .build()
                .map_err(|_| CloudError::Request("image list".to_owned()))?;
            let pager = paged(endpoint, Pagination::All);
            let images: Vec<Value> =
                retrying("listing images", || pager.query_async(&self.session)).await?;
            for value in &images {
                let record =
                    ImageRecord::from_json(value).ok_or_else(|| CloudError::Unexpected {
                        what: "GET /v2/images".to_owned(),
                        detail: format!("an image without an id: {value}"),
                    })?;
                if seen.insert(record.id.clone()) {
                    records.push(record);
                }
            }
        }
        records.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(records)
    }

    /// Creates a private, queued image; returns its id.
    pub async fn create_image(&self, image: &NewImage<'_>) -> Result<String, CloudError> {
        let bad = |what: &str| CloudError::Request(format!("image create ({what})"));
        let disk_format = serde_json::from_value(Value::String(image.disk_format.to_owned()))
            .map_err(|_| bad("disk_format"))?;
        let container_format = serde_json::from_value(Value::String("bare".to_owned()))
            .map_err(|_| bad("container_format"))?;
        let visibility = serde_json::from_value(Value::String("private".to_owned()))
            .map_err(|_| bad("visibility"))?;
        let tags: Vec<std::borrow::Cow<'_, str>> = image
            .tags
            .iter()
            .map(|t| std::borrow::Cow::Borrowed(t.as_str()))
            .collect();
        let mut builder = create::Request::builder();
        if let Some(id) = image.id {
            builder.id(id);
        }
        let endpoint = builder
            .name(Some(std::borrow::Cow::Borrowed(image.name)))
            .disk_format(disk_format)
            .container_format(container_format)
            .visibility(visibility)
            .min_disk(i32::try_from(image.min_disk).map_err(|_| bad("min_disk"))?)
            .min_ram(i32::try_from(image.min_ram).map_err(|_| bad("min_ram"))?)
            .tags(tags)
            .properties(
                image
                    .properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .build()
            .map_err(|_| bad("builder"))?;
        let created: Value = endpoint.query_async(&self.session).await.map_err(|e| {
            use openstack_sdk::api::ApiError;
            let taken = matches!(
                &e,
                ApiError::OpenStack { status, .. } | ApiError::OpenStackService { status, .. }
                    if *status == http::StatusCode::CONFLICT
            );
            match image.id {
                Some(id) if taken => CloudError::Unexpected {
                    what: format!("creating image {:?}", image.name),
                    detail: format!(
                        "image id {id} is taken in Glance (by another image, or by a deleted \
                         one: Glance never reuses ids); change versions[].id or leave it out"
                    ),
                },
                _ => CloudError::Api {
                    what: format!("creating image {:?}", image.name),
                    source: e.into(),
                },
            }
        })?;
        created
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| CloudError::Unexpected {
                what: "POST /v2/images".to_owned(),
                detail: "no id".to_owned(),
            })
    }

    /// Applies all `changes` to one image in one PATCH.
    pub async fn update_image(&self, id: &str, changes: &[ImageChange]) -> Result<(), CloudError> {
        let patch: json_patch::Patch = serde_json::from_value(json_patch(changes))
            .map_err(|e| CloudError::Request(format!("image patch ({e})")))?;
        let endpoint = patch::Request::builder()
            .id(id)
            .patch(patch)
            .build()
            .map_err(|_| CloudError::Request("image patch".to_owned()))?;
        let call = ignore(endpoint);
        retrying(&format!("updating image {id}"), || {
            call.query_async(&self.session)
        })
        .await
    }

    /// Starts a web-download import of `uri` into a queued image.
    pub async fn import_web_download(&self, id: &str, uri: &str) -> Result<(), CloudError> {
        let method: import::create::Method<'_> =
            serde_json::from_value(serde_json::json!({"name": "web-download", "uri": uri}))
                .map_err(|e| CloudError::Request(format!("image import ({e})")))?;
        let endpoint = import::create::Request::builder()
            .image_id(id)
            .method(method)
            .build()
            .map_err(|_| CloudError::Request("image import".to_owned()))?;
        ignore(endpoint)
            .query_async(&self.session)
            .await
            .map_err(|e| CloudError::Api {
                what: format!("importing {uri} into image {id}"),
                source: e.into(),
            })
    }

    /// Uploads image data into a queued image, streaming from `reader` (constant memory).
    pub async fn upload_image_data<R>(&self, id: &str, reader: R) -> Result<(), CloudError>
    where
        R: tokio::io::AsyncRead + Send + Sync + 'static,
    {
        use tokio_util::compat::TokioAsyncReadCompatExt as _;
        let endpoint = file::upload::Request::builder()
            .image_id(id)
            .header(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            )
            .build()
            .map_err(|_| CloudError::Request("image upload".to_owned()))?;
        let response = raw_with_body(endpoint, BoxedAsyncRead::new(reader.compat()))
            .query_async(&self.session)
            .await
            .map_err(|e| CloudError::Api {
                what: format!("uploading data to image {id}"),
                source: e.into(),
            })?;
        if !response.status().is_success() {
            return Err(CloudError::Unexpected {
                what: format!("PUT /v2/images/{id}/file"),
                detail: format!("HTTP {}", response.status()),
            });
        }
        Ok(())
    }

    /// One image, or `None` when it does not exist.
    pub async fn image(&self, id: &str) -> Result<Option<ImageRecord>, CloudError> {
        let endpoint = get::Request::builder()
            .id(id)
            .build()
            .map_err(|_| CloudError::Request("image get".to_owned()))?;
        match endpoint.query_async(&self.session).await {
            Ok(value) => {
                let value: Value = value;
                Ok(ImageRecord::from_json(&value))
            }
            Err(openstack_sdk::api::ApiError::ResourceNotFound) => Ok(None),
            Err(openstack_sdk::api::ApiError::OpenStack { status, .. })
                if status == http::StatusCode::NOT_FOUND =>
            {
                Ok(None)
            }
            Err(e) => Err(CloudError::Api {
                what: format!("reading image {id}"),
                source: e.into(),
            }),
        }
    }

    /// The tasks Glance ran for image `id` (its import tasks, with their messages), oldest
    /// first; Glance 2.12+ (`GET /v2/images/{id}/tasks`).
    pub async fn image_tasks(&self, id: &str) -> Result<Vec<ImageTask>, CloudError> {
        let listing = listing::Listing::new(
            ServiceType::Image,
            format!("images/{id}/tasks"),
            "tasks",
            None,
        );
        self.list_once(listing).await
    }

    /// Deactivates an image (its data can no longer be downloaded or booted).
    pub async fn deactivate_image(&self, id: &str) -> Result<(), CloudError> {
        let endpoint = deactivate::Request::builder()
            .id(id)
            .build()
            .map_err(|_| CloudError::Request("image deactivate".to_owned()))?;
        let call = ignore(endpoint);
        retrying(&format!("deactivating image {id}"), || {
            call.query_async(&self.session)
        })
        .await
    }

    /// Deletes an image.
    pub async fn delete_image(&self, id: &str) -> Result<(), CloudError> {
        let endpoint = delete::Request::builder()
            .id(id)
            .build()
            .map_err(|_| CloudError::Request("image delete".to_owned()))?;
        let call = ignore(endpoint);
        retrying(&format!("deleting image {id}"), || {
            call.query_async(&self.session)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use openstack_sdk::api::ApiError;

    use super::{ImageRecord, retrying};

    fn server_error(status: u16) -> ApiError<openstack_sdk::RestError> {
        ApiError::OpenStack {
            status: http::StatusCode::from_u16(status).unwrap(),
            uri: "http://127.0.0.1:9292/v2/images".parse().unwrap(),
            msg: "database is locked".to_owned(),
            req_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_others_are_not() {
        let calls = AtomicU32::new(0);
        let ok: u32 = retrying("listing images", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(server_error(503)),
                n => Ok(n),
            }
        })
        .await
        .unwrap();
        assert_eq!((ok, calls.load(Ordering::SeqCst)), (2, 3));

        let calls = AtomicU32::new(0);
        let err = retrying::<(), _, _>("reading image", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ApiError::ResourceNotFound)
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: no retry");
        assert!(err.to_string().contains("reading image"));

        let calls = AtomicU32::new(0);
        let _ = retrying::<(), _, _>("deleting image", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(server_error(502))
        })
        .await
        .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "gives up after three attempts"
        );
    }

    #[test]
    fn glance_images_are_split_into_core_fields_and_properties() {
        let value = serde_json::json!({
            "id": "i-1", "name": "Ubuntu 24.04", "status": "active", "visibility": "public",
            "os_hidden": false, "min_disk": 8, "min_ram": 512, "size": 1024, "tags": ["b", "a"],
            "os_hash_algo": "sha512", "os_hash_value": "ab", "checksum": "cd",
            "os_distro": "ubuntu", "hw_vif_multiqueue_enabled": true, "os_glance_importing_to_stores": "",
            "steward_definition": "Ubuntu 24.04", "protected": false, "owner": "p", "file": "/v2/images/i-1/file",
        });
        let r = ImageRecord::from_json(&value).unwrap();
        assert_eq!((r.min_disk, r.min_ram, r.size), (8, 512, Some(1024)));
        assert_eq!(r.tags.iter().cloned().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            r.properties.keys().cloned().collect::<Vec<_>>(),
            [
                "hw_vif_multiqueue_enabled",
                "os_distro",
                "steward_definition"
            ]
        );
        assert_eq!(r.properties["hw_vif_multiqueue_enabled"], "true");
        assert!(ImageRecord::from_json(&serde_json::json!({"name": "no id"})).is_none());
    }
}
