//! Admin listings of nova, cinder, neutron and octavia through openstack_sdk's `RestEndpoint`
//! escape hatch: one generic GET endpoint instead of the SDK's generated per-service crates
//! (which would add minutes of compile time for the few calls the reconciler makes). The SDK
//! still authenticates, finds the endpoint in the catalog, negotiates the microversion and
//! follows the `*_links` pages.

use std::borrow::Cow;

use http::Method;
use openstack_sdk::api::rest_endpoint_prelude::*;
use openstack_sdk::api::{Pageable, QueryParams};
use openstack_sdk::types::{ApiVersion, ServiceType};

/// One paged GET listing: `path` of `service`, items under `key`.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub(crate) service: ServiceType,
    pub(crate) path: String,
    pub(crate) key: &'static str,
    pub(crate) query: Vec<(&'static str, String)>,
    /// The microversion the records need (nova 2.47 embeds the flavor in a server).
    pub(crate) microversion: Option<ApiVersion>,
}

impl Listing {
    /// `path` of `service`, items under `key`, at microversion `(major, minor)` when given.
    pub(crate) fn new(
        service: ServiceType,
        path: impl Into<String>,
        key: &'static str,
        microversion: Option<(u8, u8)>,
    ) -> Self {
        Self {
            service,
            path: path.into(),
            key,
            query: Vec::new(),
            microversion: microversion.map(|(major, minor)| ApiVersion::new(major, minor)),
        }
    }

    /// Adds a query parameter.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }
}

impl RestEndpoint for Listing {
    fn method(&self) -> Method {
        Method::GET
    }

    fn endpoint(&self) -> Cow<'static, str> {
        self.path.clone().into()
    }

    fn service_type(&self) -> ServiceType {
        self.service.clone()
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut params = QueryParams::default();
        for (name, value) in &self.query {
            params.push(*name, value.as_str());
        }
        params
    }

    fn response_key(&self) -> Option<Cow<'static, str>> {
        Some(self.key.into())
    }

    fn api_version(&self) -> Option<ApiVersion> {
        self.microversion
    }
}

impl Pageable for Listing {}

/// One call of any method on `path` of `service`, with an optional JSON body (the load-balancer
/// and network calls of `steward check`, which create and delete what they test).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) service: ServiceType,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Vec<u8>>,
}

impl RestEndpoint for Call {
    fn method(&self) -> Method {
        self.method.clone()
    }

    fn endpoint(&self) -> Cow<'static, str> {
        self.path.clone().into()
    }

    fn service_type(&self) -> ServiceType {
        self.service.clone()
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        Ok(self.body.clone().map(|b| ("application/json", b)))
    }
}
