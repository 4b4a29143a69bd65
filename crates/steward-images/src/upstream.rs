//! Upstream resolution: what each definition's upstream offers now, and what stands in the way
//! of a verifiable automated import.
//!
//! For every version: the image URL must answer (redirects followed); its digest must come from
//! the definition's `checksum`, a sums file (`checksums_url`) that lists the file, or a bare
//! digest file (`checksum_url`) — with sha256 or sha512, since md5 and sha1 cannot verify an
//! import; a build date must be known (the definition's, else `Last-Modified`). For the
//! definition: the newest upstream version, from `latest_url` (a plain-text version such as
//! CirrOS's `version/released`, or the `Last-Modified` date of a latest-image URL), and whether
//! the definition lists it. The findings are the "list of upstreams that need fixing" the SCS
//! operators asked for.

use chrono::NaiveDate;
use reqwest::header::LAST_MODIFIED;

use crate::checksum::{ExpectedDigest, find_digest};
use crate::definition::{ImageDefinition, Version};
use crate::scs0102::parse_build_date;

/// Something that blocks a verifiable automated import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpstreamProblem {
    /// No `checksum`, `checksums_url` or `checksum_url`.
    NoChecksum,
    /// The only digest available is md5 or sha1.
    WeakChecksumOnly {
        /// The algorithm.
        algorithm: String,
    },
    /// The checksum file cannot be fetched or does not list the image.
    ChecksumFile {
        /// What went wrong.
        detail: String,
    },
    /// The image URL answers with an error status.
    UrlGone {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The image URL cannot be reached.
    Unreachable {
        /// The URL.
        url: String,
        /// The error.
        detail: String,
    },
    /// Neither the definition nor the upstream (`Last-Modified`) dates the build.
    NoBuildDate,
    /// There is no stable pointer to the newest build (`latest_url`, or `version: latest`).
    NoLatestPointer,
    /// The `latest_url` did not say which version is the newest.
    LatestPointer {
        /// The `latest_url`.
        url: String,
        /// Why: unreachable, an HTTP status, or neither a version nor a date in the answer.
        detail: String,
    },
}

impl std::fmt::Display for UpstreamProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoChecksum => write!(f, "no checksum source (checksum, checksums_url)"),
            Self::WeakChecksumOnly { algorithm } => write!(
                f,
                "only {algorithm} checksums (md5 needs --allow-md5; sha1 is never accepted)"
            ),
            Self::ChecksumFile { detail } => write!(f, "checksum file: {detail}"),
            Self::UrlGone { url, status } => write!(f, "URL gone (HTTP {status}): {url}"),
            Self::Unreachable { url, detail } => write!(f, "unreachable: {url}: {detail}"),
            Self::NoBuildDate => write!(f, "no readable build date (Last-Modified or build_date)"),
            Self::NoLatestPointer => write!(f, "no stable latest pointer (latest_url)"),
            Self::LatestPointer { url, detail } => write!(f, "latest_url {url}: {detail}"),
        }
    }
}

/// One version, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedVersion {
    /// The version string.
    pub version: String,
    /// The digest the image must have, when known.
    pub digest: Option<String>,
    /// The build date, when known.
    pub build_date: Option<NaiveDate>,
    /// What blocks a verifiable import.
    pub problems: Vec<UpstreamProblem>,
}

/// A definition, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedDefinition {
    /// Definition name.
    pub name: String,
    /// The newest version the definition lists.
    pub listed: String,
    /// The newest version upstream offers, when it can be told.
    pub newest: Option<String>,
    /// Whether the upstream has something newer than the definition lists.
    pub behind: bool,
    /// Per version.
    pub versions: Vec<ResolvedVersion>,
    /// Definition-level problems.
    pub problems: Vec<UpstreamProblem>,
}

/// The HTTP client type used for upstreams.
pub use reqwest::Client as HttpClient;

/// An HTTP client for upstreams (redirects followed, 30 s timeout).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn base_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn last_modified(response: &reqwest::Response) -> Option<NaiveDate> {
    let value = response.headers().get(LAST_MODIFIED)?.to_str().ok()?;
    chrono::DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|t| t.date_naive())
}

async fn fetch_text(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status().as_u16()));
    }
    response.text().await.map_err(|e| format!("{url}: {e}"))
}

/// Resolves one version.
pub async fn resolve_version(client: &reqwest::Client, version: &Version) -> ResolvedVersion {
    let url = version
        .mirror_url
        .as_ref()
        .unwrap_or(&version.url)
        .value
        .clone();
    let mut problems = Vec::new();
    let mut upstream_date = None;
    match client.head(&url).send().await {
        Ok(r) if r.status().is_success() => upstream_date = last_modified(&r),
        Ok(r) => problems.push(UpstreamProblem::UrlGone {
            url: url.clone(),
            status: r.status().as_u16(),
        }),
        Err(e) => problems.push(UpstreamProblem::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        }),
    }
    // A checksum file is searched for the file that is imported (the mirror's), then for the
    // upstream's name (a mirror that keeps the name, or a sums file beside the mirror).
    let file = base_name(&version.url.value);
    let imported_file = base_name(&url);
    let digest: Option<ExpectedDigest> = match (
        &version.checksum,
        &version.checksums_url,
        &version.checksum_url,
    ) {
        (Some(c), _, _) => ExpectedDigest::parse(&c.value).ok(),
        (None, Some(sums), _) | (None, None, Some(sums)) => {
            match fetch_text(client, &sums.value).await {
                Ok(text) => {
                    match find_digest(&text, imported_file).or_else(|_| find_digest(&text, file)) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            problems.push(UpstreamProblem::ChecksumFile {
                                detail: format!("{}: {e}", sums.value),
                            });
                            None
                        }
                    }
                }
                Err(detail) => {
                    problems.push(UpstreamProblem::ChecksumFile { detail });
                    None
                }
            }
        }
        (None, None, None) => {
            problems.push(UpstreamProblem::NoChecksum);
            None
        }
    };
    if let Some(d) = &digest
        && d.algorithm.is_weak()
    {
        problems.push(UpstreamProblem::WeakChecksumOnly {
            algorithm: d.algorithm.to_string(),
        });
    }
    let build_date = version
        .build_date
        .as_ref()
        .and_then(|d| parse_build_date(&d.value))
        .or(upstream_date);
    if build_date.is_none()
        && !problems.iter().any(|p| {
            matches!(
                p,
                UpstreamProblem::UrlGone { .. } | UpstreamProblem::Unreachable { .. }
            )
        })
    {
        problems.push(UpstreamProblem::NoBuildDate);
    }
    ResolvedVersion {
        version: version.version.value.clone(),
        digest: digest.map(|d| format!("{}:{}", d.algorithm, d.hex)),
        build_date,
        problems,
    }
}

/// Resolves a whole definition: every version, plus the newest upstream version.
pub async fn resolve(client: &reqwest::Client, def: &ImageDefinition) -> ResolvedDefinition {
    let mut versions = Vec::with_capacity(def.versions.len());
    for v in &def.versions {
        versions.push(resolve_version(client, &v.value).await);
    }
    let mut listed: Vec<&str> = def
        .versions
        .iter()
        .map(|v| v.value.version.value.as_str())
        .collect();
    listed.sort_by(|a, b| natural_cmp(a, b));
    let listed = listed.last().copied().unwrap_or_default().to_owned();
    let mut problems = Vec::new();
    let pointer = listed == "latest";
    let newest = match &def.latest_url {
        Some(url) => match newest_from(client, &url.value).await {
            Ok(newest) => Some(newest),
            Err(detail) => {
                problems.push(UpstreamProblem::LatestPointer {
                    url: url.value.clone(),
                    detail,
                });
                None
            }
        },
        None if pointer => versions
            .last()
            .and_then(|v| v.build_date)
            .map(|d| d.format("%Y%m%d").to_string()),
        None => {
            problems.push(UpstreamProblem::NoLatestPointer);
            None
        }
    };
    let behind = !pointer
        && newest.as_deref().is_some_and(|n| {
            n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == 'v')
                && natural_cmp(n, &listed).is_gt()
        });
    ResolvedDefinition {
        name: def.name.value.clone(),
        listed,
        newest,
        behind,
        versions,
        problems,
    }
}

/// The newest version behind a `latest_url`: a small body is a pointer file holding a version
/// (CirrOS's `version/released`, OSISM's `last-1.33`); anything else is dated by
/// `Last-Modified` (`YYYYMMDD`).
async fn newest_from(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let date = last_modified(&response);
    // A small body is a pointer file (whatever its content type); an image is dated instead.
    if response.content_length().is_some_and(|n| n < 512) {
        let body = response
            .text()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if let Some(version) = version_in(&body) {
            return Ok(version);
        }
    }
    date.map(|d| d.format("%Y%m%d").to_string())
        .ok_or_else(|| "the answer names no version and has no Last-Modified date".to_owned())
}

/// A version in a pointer file: the whole body (`0.6.3`), or the version in the file name of
/// the last token (OSISM's `last-1.33`: `2026-11-20 ubuntu-2404-kube-v1.33/ubuntu-2404-kube-v1.33.5.qcow2`).
fn version_in(body: &str) -> Option<String> {
    let body = body.trim();
    if !body.is_empty() && !body.contains(char::is_whitespace) && !body.contains('/') {
        return Some(body.to_owned());
    }
    let file = base_name(body.split_whitespace().last()?);
    // The last `v<digits>(.<digits>)+` run in the file name.
    let bytes = file.as_bytes();
    (0..bytes.len()).rev().find_map(|start| {
        let rest = &file[start..];
        let digits = rest.strip_prefix('v')?;
        let len = digits
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let version = digits[..len].trim_end_matches('.');
        (version.contains('.') && version.starts_with(|c: char| c.is_ascii_digit()))
            .then(|| format!("v{version}"))
    })
}

/// Natural order: digit runs compare as numbers (`0.6.10` > `0.6.9`, `v1.33.10` > `v1.33.4`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                out.push(
                    rest[..digits]
                        .parse::<u64>()
                        .map_err(|_| rest[..digits].to_owned()),
                );
                rest = &rest[digits..];
            } else {
                let other = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
                out.push(Err(rest[..other].to_owned()));
                rest = &rest[other..];
            }
        }
        out
    }
    let (x, y) = (chunks(a), chunks(b));
    for (p, q) in x.iter().zip(&y) {
        let order = match (p, q) {
            (Ok(m), Ok(n)) => m.cmp(n),
            (Err(m), Err(n)) => m.cmp(n),
            (Ok(_), Err(_)) => std::cmp::Ordering::Greater,
            (Err(_), Ok(_)) => std::cmp::Ordering::Less,
        };
        if order.is_ne() {
            return order;
        }
    }
    x.len().cmp(&y.len())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pointer_tests {
    #[test]
    fn versions_in_pointer_files() {
        assert_eq!(super::version_in("0.6.3\n").as_deref(), Some("0.6.3"));
        assert_eq!(
            super::version_in("2026-11-20 ubuntu-2404-kube-v1.33/ubuntu-2404-kube-v1.33.5.qcow2\n")
                .as_deref(),
            Some("v1.33.5")
        );
        assert_eq!(super::version_in("see https://example.net/page"), None);
    }
}
