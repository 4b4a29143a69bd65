//! Carrying out a plan against Glance.
//!
//! Order: leftovers of interrupted imports are deleted first, new versions are created and
//! verified, then existing images are updated (one PATCH each), then expired generations are
//! deactivated or deleted. A new image stays **private** until its content is verified: the
//! upstream file is streamed once and hashed twice — with the definition's algorithm, against
//! the expected digest, and with sha512, against the `os_hash_value` Glance computed over what it
//! stored. Any mismatch deletes the image and fails the run; nothing half-verified is left
//! visible. Only then does the image get its final visibility.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use steward_cloud::{Cloud, ImageChange, NewImage};

use crate::plan::{Action, Change};

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// An OpenStack call failed.
    #[error(transparent)]
    Cloud(#[from] steward_cloud::CloudError),
    /// Glance refused to create the image (a taken fixed id, a quota): no import method can
    /// help, so `auto` does not fall back to upload.
    #[error(transparent)]
    Create(steward_cloud::CloudError),
    /// The import did not finish in time or ended in a bad state.
    #[error("import of {name} ({id}) ended in status {status:?}")]
    Import {
        /// Image name.
        name: String,
        /// Image id.
        id: String,
        /// Last status seen.
        status: String,
    },
    /// The content does not match the expected digest; `aftermath` says what became of the
    /// image in Glance (never created, deleted, or left because its delete failed).
    #[error("checksum mismatch for {name} from {url}: {detail}; {aftermath}")]
    Checksum {
        /// Image name.
        name: String,
        /// Upstream URL.
        url: String,
        /// What differed.
        detail: String,
        /// What became of the image.
        aftermath: String,
    },
    /// Glance accepted a web-download import and then failed it (the image went back to
    /// `queued` with `os_glance_failed_import` set): found at the next poll, not at the timeout.
    #[error(
        "Glance failed the web-download import of {name} ({id}) from {url}: {reason}; {aftermath}"
    )]
    ImportFailed {
        /// Image name.
        name: String,
        /// Image id.
        id: String,
        /// What Glance was to fetch.
        url: String,
        /// Glance's reason (its import task's message), or the stores it names.
        reason: String,
        /// What became of the image.
        aftermath: String,
    },
    /// The upstream could not be downloaded for verification.
    #[error("cannot download {url} for verification: {detail}")]
    Download {
        /// URL.
        url: String,
        /// Error.
        detail: String,
    },
}

/// How image data gets into Glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImportMethod {
    /// Web-download; if Glance cannot import it (method disabled, URL not allowed, import
    /// failed), a streamed upload instead.
    #[default]
    Auto,
    /// Glance downloads the upstream itself (`web-download` import).
    WebDownload,
    /// Steward downloads to a temporary file (verifying it on the way) and streams it to Glance.
    Upload,
}

/// Options of an apply run.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// How long one import may take.
    pub import_timeout: Duration,
    /// How image data gets into Glance.
    pub method: ImportMethod,
    /// Show progress bars (when stderr is a terminal).
    pub progress_bars: bool,
    /// Accept md5 digests (weak; only for upstreams that publish nothing better).
    pub allow_md5: bool,
    /// When a version's mirror cannot be imported from (unreachable, or Glance fails the
    /// import), import from its upstream `url` instead, verified against the same checksum.
    pub fallback_to_upstream: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            import_timeout: Duration::from_secs(1800),
            method: ImportMethod::Auto,
            progress_bars: false,
            allow_md5: false,
            fallback_to_upstream: false,
        }
    }
}

fn phase(action: &Action) -> u8 {
    match action {
        Action::Delete { reason, .. } if reason.contains("interrupted") => 0,
        Action::Create { .. } => 1,
        Action::Update { .. } => 2,
        Action::Deactivate { .. } => 3,
        Action::Delete { .. } => 4,
    }
}

fn change_value(c: &Change) -> Option<Value> {
    let to = c.to.as_ref()?;
    Some(match c.field.as_str() {
        "os_hidden" => Value::Bool(to == "true"),
        "min_disk" | "min_ram" => to
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or(Value::String(to.clone())),
        "tags" => Value::Array(
            to.split(',')
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .collect(),
        ),
        _ => Value::String(to.clone()),
    })
}

/// Carries out `actions`; `progress` receives one line per step.
pub async fn apply(
    cloud: &Cloud,
    http: &reqwest::Client,
    actions: &[Action],
    options: ApplyOptions,
    mut progress: impl FnMut(&str),
) -> Result<(), ApplyError> {
    let mut ordered: Vec<&Action> = actions.iter().collect();
    ordered.sort_by_key(|a| phase(a));
    for action in ordered {
        match action {
            Action::Create {
                name,
                url,
                upstream_url,
                disk_format,
                digest,
                visibility,
                properties,
                tags,
                min_disk,
                min_ram,
                version,
                verified,
                id,
                ..
            } => {
                let new = NewImage {
                    id: id.as_deref(),
                    name,
                    disk_format,
                    min_disk: *min_disk,
                    min_ram: *min_ram,
                    tags,
                    properties,
                };
                let mut ctx = Import {
                    cloud,
                    http,
                    url: url.clone(),
                    digest: digest.as_deref(),
                    image: &new,
                    version,
                    options,
                };
                let id = match ctx.run(&mut progress).await {
                    Ok(id) => id,
                    Err(error) => match upstream_url {
                        Some(upstream)
                            if options.fallback_to_upstream && falls_back_to_upstream(&error) =>
                        {
                            progress(&format!(
                                "the mirror {url} did not work ({error}); importing from the \
                                 upstream {upstream} instead (--fallback-to-upstream), verified \
                                 against the same checksum"
                            ));
                            ctx.url = upstream.clone();
                            ctx.run(&mut progress).await?
                        }
                        _ => return Err(error),
                    },
                };
                // Visibility and the verification marker in one PATCH: an image is never
                // visible without having been verified.
                let mut finish = vec![ImageChange {
                    field: "visibility".into(),
                    value: Some(Value::String(visibility.clone())),
                }];
                if let Some(v) = verified {
                    finish.push(ImageChange {
                        field: crate::plan::VERIFIED_PROPERTY.into(),
                        value: Some(Value::String(v.clone())),
                    });
                }
                cloud.update_image(&id, &finish).await?;
                progress(&format!("{name} is {visibility}"));
            }
            Action::Update {
                id, name, changes, ..
            } => {
                let changes: Vec<ImageChange> = changes
                    .iter()
                    .map(|c| ImageChange {
                        field: c.field.clone(),
                        value: change_value(c),
                    })
                    .collect();
                cloud.update_image(id, &changes).await?;
                progress(&format!("updated {name} ({} change(s))", changes.len()));
            }
            Action::Deactivate { id, name, .. } => {
                cloud.deactivate_image(id).await?;
                progress(&format!("deactivated {name}"));
            }
            Action::Delete { id, name, .. } => {
                cloud.delete_image(id).await?;
                progress(&format!("deleted {name}"));
            }
        }
    }
    Ok(())
}

/// One image to bring into Glance.
struct Import<'a> {
    cloud: &'a Cloud,
    http: &'a reqwest::Client,
    url: String,
    digest: Option<&'a str>,
    image: &'a NewImage<'a>,
    version: &'a str,
    options: ApplyOptions,
}

/// Whether a failure to import from a mirror is one the upstream `url` may not have: the
/// mirror could not be read, or Glance could not fetch from it. A checksum mismatch is not (the
/// same checksum would be checked), nor is a refusal to create the image.
fn falls_back_to_upstream(error: &ApplyError) -> bool {
    matches!(
        error,
        ApplyError::Download { .. } | ApplyError::ImportFailed { .. } | ApplyError::Import { .. }
    )
}

impl Import<'_> {
    /// Imports by the configured method; `auto` falls back to upload when web-download does
    /// not work (Glance cannot reach the upstream, or fails the import).
    async fn run(&self, progress: &mut impl FnMut(&str)) -> Result<String, ApplyError> {
        match self.options.method {
            ImportMethod::WebDownload => self.web_download(progress).await,
            ImportMethod::Upload => self.upload(progress).await,
            ImportMethod::Auto => match self.web_download(progress).await {
                Ok(id) => Ok(id),
                Err(
                    e @ (ApplyError::Checksum { .. }
                    | ApplyError::Download { .. }
                    | ApplyError::Create(_)),
                ) => Err(e),
                Err(error) => {
                    progress(&format!(
                        "web-download did not work ({error}); uploading instead"
                    ));
                    self.upload(progress).await
                }
            },
        }
    }

    /// A mismatch found before anything was created in Glance ([`Import::reject`] rewrites
    /// the aftermath once an image exists).
    fn mismatch(&self, detail: String) -> ApplyError {
        ApplyError::Checksum {
            name: self.image.name.to_owned(),
            url: self.url.to_owned(),
            detail,
            aftermath: "nothing was created in Glance".to_owned(),
        }
    }

    /// Creates the private image, has `send` put its data in (deleting the image if that
    /// fails), and waits until Glance has stored it.
    async fn receive<F, Fut>(
        &self,
        progress: &mut impl FnMut(&str),
        send: F,
    ) -> Result<(String, steward_cloud::ImageRecord), ApplyError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), steward_cloud::CloudError>>,
    {
        let id = self
            .cloud
            .create_image(self.image)
            .await
            .map_err(ApplyError::Create)?;
        progress(&format!(
            "created {} ({}) as {id}, private until verified",
            self.image.name, self.version
        ));
        if let Err(e) = send(id.clone()).await {
            let _ = self.cloud.delete_image(&id).await;
            return Err(e.into());
        }
        let image = wait_active(
            self.cloud,
            &id,
            self.image.name,
            &self.url,
            self.options.import_timeout,
        )
        .await?;
        Ok((id, image))
    }

    /// Deletes an image whose content did not verify and returns the error to report.
    async fn reject(&self, id: &str, mut error: ApplyError) -> ApplyError {
        let outcome = match self.cloud.delete_image(id).await {
            Ok(()) => format!("image {id} was deleted"),
            Err(e) => format!(
                "deleting image {id} failed too ({e}): it is private and unverified, delete it \
                 by hand or let the next apply do it"
            ),
        };
        if let ApplyError::Checksum { aftermath, .. } = &mut error {
            *aftermath = outcome;
        }
        error
    }

    /// Glance fetches the upstream; Steward verifies by downloading it once more.
    async fn web_download(&self, progress: &mut impl FnMut(&str)) -> Result<String, ApplyError> {
        let cloud = self.cloud;
        let (id, image) = self
            .receive(progress, |id| async move {
                cloud.import_web_download(&id, &self.url).await
            })
            .await?;
        progress(&format!("imported {}", self.url));
        if let Err(error) = verify(
            self.http,
            &self.url,
            self.digest,
            &image,
            self.options.allow_md5,
        )
        .await
        {
            let error = match error {
                Verify::Mismatch(detail) => self.mismatch(detail),
                Verify::Download(detail) => ApplyError::Download {
                    url: self.url.to_owned(),
                    detail,
                },
            };
            return Err(self.reject(&id, error).await);
        }
        progress(&format!(
            "verified {}: {}",
            self.image.name,
            self.digest.unwrap_or("glance hash")
        ));
        Ok(id)
    }

    /// Steward downloads to a temporary file, hashing on the way (constant memory), refuses a
    /// mismatch before anything exists in Glance, then streams the file into a new image and
    /// checks the sha512 Glance computed over what it stored.
    async fn upload(&self, progress: &mut impl FnMut(&str)) -> Result<String, ApplyError> {
        use tokio::io::AsyncWriteExt as _;
        let download = |detail: String| ApplyError::Download {
            url: self.url.to_owned(),
            detail,
        };
        let temp = tempfile::Builder::new()
            .prefix("steward-image-")
            .tempfile()
            .map_err(|e| download(e.to_string()))?;
        let mut response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| download(e.to_string()))?;
        if !response.status().is_success() {
            return Err(download(format!("HTTP {}", response.status().as_u16())));
        }
        let bar = self.bar(response.content_length(), "download");
        let mut file =
            tokio::fs::File::from_std(temp.reopen().map_err(|e| download(e.to_string()))?);
        let mut hashes = Hashes::new(self.options.allow_md5);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| download(e.to_string()))?
        {
            hashes.update(&chunk);
            bar.inc(chunk.len() as u64);
            file.write_all(&chunk)
                .await
                .map_err(|e| download(e.to_string()))?;
        }
        file.flush().await.map_err(|e| download(e.to_string()))?;
        bar.finish_and_clear();
        let digests = hashes.finish();
        digests
            .check(self.digest)
            .map_err(|detail| self.mismatch(detail))?;
        let bytes = digests.bytes;
        progress(&format!(
            "downloaded and verified {} ({bytes} bytes)",
            self.url
        ));
        let reader = tokio::fs::File::open(temp.path())
            .await
            .map_err(|e| download(e.to_string()))?;
        let bar = self.bar(Some(bytes), "upload");
        let (cloud, data) = (self.cloud, bar.wrap_async_read(reader));
        let (id, image) = self
            .receive(progress, |id| async move {
                cloud.upload_image_data(&id, data).await
            })
            .await?;
        bar.finish_and_clear();
        if let Err(detail) = digests.matches_stored(&image) {
            return Err(self.reject(&id, self.mismatch(detail)).await);
        }
        progress(&format!("uploaded {} to {id}", self.image.name));
        Ok(id)
    }

    fn bar(&self, length: Option<u64>, what: &str) -> indicatif::ProgressBar {
        if !self.options.progress_bars {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(length.unwrap_or(0));
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(format!("{what} {}", self.image.name));
        bar
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Glance's account of a failed import: the image is `queued` again, nothing is importing and
/// `os_glance_failed_import` names the stores that failed.
fn failed_import(image: &steward_cloud::ImageRecord) -> Option<String> {
    match (&image.failed_import, &image.importing_to_stores) {
        (Some(failed), None) if image.status == "queued" => Some(failed.clone()),
        _ => None,
    }
}

/// Why Glance failed the import of `id`: its import task's message when Glance shows the
/// image's tasks, else the stores it names.
async fn failure_reason(cloud: &Cloud, id: &str, stores: &str) -> String {
    let message = cloud.image_tasks(id).await.ok().and_then(|tasks| {
        tasks
            .into_iter()
            .rev()
            .find(|t| t.status == "failure")
            .and_then(|t| t.message)
            .filter(|m| !m.trim().is_empty())
    });
    match message {
        Some(message) => format!("{message} (failed for store(s) {stores})"),
        None => format!("Glance marked the import failed for store(s) {stores}"),
    }
}

async fn wait_active(
    cloud: &Cloud,
    id: &str,
    name: &str,
    url: &str,
    timeout: Duration,
) -> Result<steward_cloud::ImageRecord, ApplyError> {
    let deadline = Instant::now() + timeout;
    let mut status = String::new();
    while Instant::now() < deadline {
        let image = cloud.image(id).await?;
        if let Some(stores) = image.as_ref().and_then(failed_import) {
            let reason = failure_reason(cloud, id, &stores).await;
            let aftermath = match cloud.delete_image(id).await {
                Ok(()) => format!("image {id} was deleted"),
                Err(e) => format!("deleting image {id} failed too ({e})"),
            };
            return Err(ApplyError::ImportFailed {
                name: name.to_owned(),
                id: id.to_owned(),
                url: url.to_owned(),
                reason,
                aftermath,
            });
        }
        match image {
            Some(image) if image.status == "active" => return Ok(image),
            Some(image) if matches!(image.status.as_str(), "killed" | "deleted") => {
                status = image.status;
                break;
            }
            Some(image) => status = image.status,
            None => {
                status = "gone".to_owned();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = cloud.delete_image(id).await;
    Err(ApplyError::Import {
        name: name.to_owned(),
        id: id.to_owned(),
        status,
    })
}

enum Verify {
    Mismatch(String),
    Download(String),
}

/// The digests of one stream: sha256 and sha512 always, md5 only when allowed.
struct Hashes {
    sha256: Sha256,
    sha512: Sha512,
    md5: Option<md5::Md5>,
    bytes: u64,
}

/// Finished digests, as lower-case hex.
struct Digests {
    sha256: String,
    sha512: String,
    md5: Option<String>,
    bytes: u64,
}

impl Hashes {
    fn new(allow_md5: bool) -> Self {
        Self {
            sha256: Sha256::new(),
            sha512: Sha512::new(),
            md5: allow_md5.then(md5::Md5::new),
            bytes: 0,
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.sha512.update(chunk);
        if let Some(md5) = &mut self.md5 {
            md5.update(chunk);
        }
        self.bytes += chunk.len() as u64;
    }

    fn finish(self) -> Digests {
        Digests {
            sha256: hex(&self.sha256.finalize()),
            sha512: hex(&self.sha512.finalize()),
            md5: self.md5.map(|m| hex(&m.finalize())),
            bytes: self.bytes,
        }
    }
}

impl Digests {
    /// Checks the expected `<algorithm>:<hex>`; md5 only when it was computed (allowed).
    fn check(&self, expected: Option<&str>) -> Result<(), String> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let (algorithm, want) = expected.split_once(':').unwrap_or(("", expected));
        let got = match algorithm {
            "sha256" => &self.sha256,
            "sha512" => &self.sha512,
            "md5" if self.md5.is_some() => self.md5.as_ref().map_or(&self.sha256, |m| m),
            other => {
                return Err(format!(
                    "cannot verify a {other} digest (md5 needs --allow-md5)"
                ));
            }
        };
        if got == want {
            Ok(())
        } else {
            Err(format!("upstream {algorithm} is {got}, expected {want}"))
        }
    }

    /// Whether Glance stored exactly these bytes: its sha512 multihash and size agree.
    fn matches_stored(&self, image: &steward_cloud::ImageRecord) -> Result<(), String> {
        if image.os_hash_algo.as_deref() == Some("sha512")
            && image
                .os_hash_value
                .as_deref()
                .is_some_and(|v| v != self.sha512)
        {
            return Err("Glance stored different bytes than the upstream serves".to_owned());
        }
        if image.size.is_some_and(|s| s != self.bytes) {
            return Err(format!(
                "Glance stored {:?} bytes, upstream served {}",
                image.size, self.bytes
            ));
        }
        Ok(())
    }
}

/// Streams `url` once and checks it against the expected digest and Glance's sha512.
async fn verify(
    http: &reqwest::Client,
    url: &str,
    expected: Option<&str>,
    image: &steward_cloud::ImageRecord,
    allow_md5: bool,
) -> Result<(), Verify> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| Verify::Download(e.to_string()))?;
    if !response.status().is_success() {
        return Err(Verify::Download(format!(
            "HTTP {}",
            response.status().as_u16()
        )));
    }
    let mut hashes = Hashes::new(allow_md5);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Verify::Download(e.to_string()))?
    {
        hashes.update(&chunk);
    }
    let digests = hashes.finish();
    digests.check(expected).map_err(Verify::Mismatch)?;
    digests.matches_stored(image).map_err(Verify::Mismatch)?;
    Ok(())
}
