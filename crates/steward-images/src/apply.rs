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
    #[error("{0}")]
    Cloud(#[from] steward_cloud::CloudError),
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
    /// The content does not match the expected digest; the image was deleted.
    #[error("checksum mismatch for {name} from {url}: {detail}; the image was deleted")]
    Checksum {
        /// Image name.
        name: String,
        /// Upstream URL.
        url: String,
        /// What differed.
        detail: String,
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

/// Options of an apply run.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// How long one import may take.
    pub import_timeout: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            import_timeout: Duration::from_secs(1800),
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
                disk_format,
                digest,
                visibility,
                properties,
                tags,
                min_disk,
                min_ram,
                version,
                verified,
                ..
            } => {
                let id = cloud
                    .create_image(&NewImage {
                        name,
                        disk_format,
                        min_disk: *min_disk,
                        min_ram: *min_ram,
                        tags,
                        properties,
                    })
                    .await?;
                progress(&format!(
                    "created {name} ({version}) as {id}, private until verified"
                ));
                cloud.import_web_download(&id, url).await?;
                let image = wait_active(cloud, &id, name, options.import_timeout).await?;
                progress(&format!("imported {url}"));
                if let Err(error) = verify(http, url, digest.as_deref(), &image).await {
                    let _ = cloud.delete_image(&id).await;
                    return Err(match error {
                        Verify::Mismatch(detail) => ApplyError::Checksum {
                            name: name.clone(),
                            url: url.clone(),
                            detail,
                        },
                        Verify::Download(detail) => ApplyError::Download {
                            url: url.clone(),
                            detail,
                        },
                    });
                }
                progress(&format!(
                    "verified {name}: {}",
                    digest.as_deref().unwrap_or("glance hash")
                ));
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

async fn wait_active(
    cloud: &Cloud,
    id: &str,
    name: &str,
    timeout: Duration,
) -> Result<steward_cloud::ImageRecord, ApplyError> {
    let deadline = Instant::now() + timeout;
    let mut status = String::new();
    while Instant::now() < deadline {
        match cloud.image(id).await? {
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

/// Streams `url` once and checks it against the expected digest and Glance's sha512.
async fn verify(
    http: &reqwest::Client,
    url: &str,
    expected: Option<&str>,
    image: &steward_cloud::ImageRecord,
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
    let mut sha256 = Sha256::new();
    let mut sha512 = Sha512::new();
    let mut bytes = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Verify::Download(e.to_string()))?
    {
        sha256.update(&chunk);
        sha512.update(&chunk);
        bytes += chunk.len() as u64;
    }
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (sha256, sha512) = (hex(&sha256.finalize()), hex(&sha512.finalize()));
    if let Some(expected) = expected {
        let (algorithm, want) = expected.split_once(':').unwrap_or(("", expected));
        let got = match algorithm {
            "sha256" => &sha256,
            "sha512" => &sha512,
            other => return Err(Verify::Mismatch(format!("cannot verify a {other} digest"))),
        };
        if got != want {
            return Err(Verify::Mismatch(format!(
                "upstream {algorithm} is {got}, expected {want}"
            )));
        }
    }
    if image.os_hash_algo.as_deref() == Some("sha512")
        && image.os_hash_value.as_deref().is_some_and(|v| v != sha512)
    {
        return Err(Verify::Mismatch(
            "Glance stored different bytes than the upstream serves".to_owned(),
        ));
    }
    if image.size.is_some_and(|s| s != bytes) {
        return Err(Verify::Mismatch(format!(
            "Glance stored {:?} bytes, upstream served {bytes}",
            image.size
        )));
    }
    Ok(())
}
