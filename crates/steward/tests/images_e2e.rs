//! The image manager end to end against a real Keystone and Glance (scripts/openstack) and a
//! real HTTP upstream (Python's http.server over a temporary folder).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;
use std::process::{Child, Command, Output};

use sha2::Digest as _;
use steward_cloud::{Cloud, ImageChange, ImageRecord};

struct Upstream {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Upstream {
    /// Python's http.server over a temporary folder.
    fn start() -> Self {
        Self::launch(|port, dir| {
            let mut command = Command::new("python3");
            command
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .arg("--directory")
                .arg(dir);
            command
        })
    }

    /// Like [`Upstream::start`], but GETs from anything but Steward (Glance's web-download)
    /// are answered 503: a mirror Glance cannot import from.
    fn start_refusing_glance() -> Self {
        let script = r#"
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if not self.headers.get('User-Agent', '').startswith('steward/'):
            self.send_error(503, 'this mirror serves Steward only')
            return
        super().do_GET()
    def log_message(self, *args):
        pass
handler = functools.partial(H, directory=sys.argv[2])
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()
"#;
        Self::launch(|port, dir| {
            let mut command = Command::new("python3");
            command.args(["-c", script, &port.to_string()]).arg(dir);
            command
        })
    }

    /// Starts the server `command` builds for a free port and a new folder; waits until it
    /// accepts connections.
    fn launch(command: impl FnOnce(u16, &Path) -> Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = command(port, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self { dir, port, child }
    }

    /// Publishes a new build: image bytes and a SHA256SUMS (optionally lying about them).
    fn publish(&self, folder: &str, bytes: &[u8], lie: bool) {
        let dir = self.dir.path().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("test.img"), bytes).unwrap();
        let digest: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let digest = if lie { "0".repeat(64) } else { digest };
        std::fs::write(dir.join("SHA256SUMS"), format!("{digest} *test.img\n")).unwrap();
    }

    fn url(&self, folder: &str, file: &str) -> String {
        format!("http://127.0.0.1:{}/{folder}/{file}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn definition(name: &str, image_url: &str, sums_url: &str) -> String {
    format!(
        "images:\n  - name: {name}\n    enable: true\n    format: raw\n    login: test\n    min_disk: 1\n    min_ram: 64\n    \
         status: active\n    visibility: public\n    multi: true\n    tags: []\n    meta:\n      architecture: x86_64\n      \
         hypervisor_type: qemu\n      hw_disk_bus: virtio\n      hw_rng_model: virtio\n      hw_vif_multiqueue_enabled: true\n      os_distro: ubuntu\n      \
         os_version: '24.04'\n      os_purpose: generic\n      image_description: test\n      replace_frequency: monthly\n      \
         uuid_validity: last-2\n      provided_until: none\n    versions:\n      - version: latest\n        url: {image_url}\n        \
         checksums_url: {sums_url}\n"
    )
}

/// An upstream with one build in `folder` (1000 bytes of `byte`) and a definition of it named
/// `<name> <pid>` in a new folder; returns the upstream (keep it alive), the folder and the file.
fn one_definition(
    folder: &str,
    name: &str,
    byte: u8,
) -> (Upstream, tempfile::TempDir, std::path::PathBuf) {
    let upstream = Upstream::start();
    upstream.publish(folder, &[byte; 1000], false);
    let work = tempfile::tempdir().unwrap();
    let defs = work.path().join("defs.yml");
    std::fs::write(
        &defs,
        definition(
            &format!("{name} {}", std::process::id()),
            &upstream.url(folder, "test.img"),
            &upstream.url(folder, "SHA256SUMS"),
        ),
    )
    .unwrap();
    (upstream, work, defs)
}

fn steward(args: &[&str], definitions: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .arg(definitions)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The test cloud, or `None` when the test command leaves OpenStack out on purpose.
async fn cloud() -> Option<(String, Cloud)> {
    if std::env::var("STEWARD_TEST_SKIP_OPENSTACK").is_ok_and(|v| v == "1") {
        return None;
    }
    let os_cloud = std::env::var("OS_CLOUD").unwrap_or_else(|_| "steward-test".to_owned());
    let cloud = Cloud::connect(&os_cloud, None).await.unwrap_or_else(|e| {
        panic!("a real Keystone and Glance are needed (scripts/openstack start): {e}")
    });
    Some((os_cloud, cloud))
}

async fn mine(cloud: &Cloud, name: &str) -> Vec<ImageRecord> {
    cloud
        .images()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.properties.get("steward_definition").map(String::as_str) == Some(name))
        .collect()
}

/// Runs `steward images apply --os-cloud … <extra> <defs>`, SIGKILLs it as soon as it reports
/// that its image exists in Glance (its "created … private until verified" line, at most
/// `deadline` later; the test does not ask Glance, whose single test worker may be busy with the
/// upload), checks that the leftover is unverified and not public, runs the same apply again,
/// and checks that it left exactly one new, active, public, verified image. Returns that run's
/// output and the image.
async fn kill_mid_apply_then_finish(
    cloud: &Cloud,
    os_cloud: &str,
    defs: &Path,
    name: &str,
    extra: &[&str],
    deadline: std::time::Duration,
) -> (String, ImageRecord) {
    use std::io::BufRead as _;
    let mut args = vec!["images", "apply", "--os-cloud", os_cloud];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(&args)
        .arg(defs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (created, seen) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("private until verified") {
                let _ = created.send(line);
            }
        }
    });
    // Kill it as soon as its image exists in Glance, before it could verify and publish it.
    let line = seen
        .recv_timeout(deadline)
        .unwrap_or_else(|e| panic!("apply never created its image: {e}"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("created "), "{line}");
    let left = mine(cloud, name).await;
    assert_eq!(left.len(), 1);
    assert!(
        !left[0].properties.contains_key("steward_verified"),
        "killed before verification: {:?}",
        left[0]
    );
    assert_ne!(
        left[0].visibility, "public",
        "an unverified image is never public"
    );

    let again = steward(&args, defs);
    assert!(again.status.success(), "{}", text(&again));
    let mut images = mine(cloud, name).await;
    assert_eq!(images.len(), 1, "the leftover is gone: {images:?}");
    let image = images.remove(0);
    assert_ne!(image.id, left[0].id);
    assert_eq!(
        (image.status.as_str(), image.visibility.as_str()),
        ("active", "public")
    );
    assert!(image.properties.contains_key("steward_verified"));
    (text(&again), image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_rotate_correct_drift_and_refuse_bad_checksums() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let name = format!("Steward E2E {}", std::process::id());
    let upstream = Upstream::start();
    upstream.publish("release", &[1u8; 300_000], false);
    let work = tempfile::tempdir().unwrap();
    let defs = work.path().join("defs.yml");
    std::fs::write(
        &defs,
        definition(
            &name,
            &upstream.url("release", "test.img"),
            &upstream.url("release", "SHA256SUMS"),
        ),
    )
    .unwrap();

    // An image of the same name that Steward does not manage.
    let foreign = cloud
        .create_image(&steward_cloud::NewImage {
            id: None,
            name: &name,
            disk_format: "raw",
            min_disk: 0,
            min_ram: 0,
            tags: &Default::default(),
            properties: &Default::default(),
        })
        .await
        .unwrap();

    let plan = steward(
        &["images", "plan", "--os-cloud", &os_cloud, "--check"],
        &defs,
    );
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan));
    assert!(
        text(&plan).contains(&format!("+ create      {name}")),
        "{}",
        text(&plan)
    );

    let dry = steward(
        &["images", "apply", "--os-cloud", &os_cloud, "--dry-run"],
        &defs,
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        mine(&cloud, &name).await.is_empty(),
        "--dry-run changes nothing"
    );

    let applied = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(applied.status.success(), "{}", text(&applied));
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1);
    let first = &images[0];
    assert_eq!(
        (
            first.status.as_str(),
            first.visibility.as_str(),
            first.name.as_str()
        ),
        ("active", "public", name.as_str())
    );
    assert_eq!(first.properties["os_distro"], "ubuntu");
    assert!(first.properties["steward_digest"].starts_with("sha256:"));
    assert!(first.tags.contains("managed_by_steward"));

    // Again: nothing to do.
    let check = steward(
        &["images", "plan", "--os-cloud", &os_cloud, "--check"],
        &defs,
    );
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // Drift by hand is corrected with one update.
    cloud
        .update_image(
            &first.id,
            &[ImageChange {
                field: "os_distro".into(),
                value: Some(serde_json::json!("debian")),
            }],
        )
        .await
        .unwrap();
    let fix = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(
        text(&fix).contains("os_distro: debian -> ubuntu"),
        "{}",
        text(&fix)
    );
    assert_eq!(
        cloud.image(&first.id).await.unwrap().unwrap().properties["os_distro"],
        "ubuntu"
    );

    // A new upstream build rotates the old one (uuid_validity last-2 keeps it, renamed, hidden).
    upstream.publish("release", &[2u8; 300_000], false);
    let rotate = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(rotate.status.success(), "{}", text(&rotate));
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 2, "{}", text(&rotate));
    let old = images.iter().find(|i| i.id == first.id).unwrap();
    assert!(
        old.hidden && old.name.starts_with(&format!("{name} 20")),
        "{old:?}"
    );
    assert_eq!(old.properties["os_purpose"], "oldgeneric");
    let new = images.iter().find(|i| i.id != first.id).unwrap();
    assert_eq!(new.name, name);
    assert_eq!(
        steward(
            &["images", "plan", "--os-cloud", &os_cloud, "--check"],
            &defs
        )
        .status
        .code(),
        Some(0)
    );

    // A third build the same day, three generations kept: the two older ones, built the same
    // day, get distinct names (the SCS recency test must not see two images of one name, hidden
    // ones included).
    let kept3 = std::fs::read_to_string(&defs)
        .unwrap()
        .replace("uuid_validity: last-2", "uuid_validity: last-3");
    std::fs::write(&defs, kept3).unwrap();
    upstream.publish("release", &[4u8; 300_000], false);
    let third = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(third.status.success(), "{}", text(&third));
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 3, "{}", text(&third));
    let names: std::collections::BTreeSet<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 3, "distinct names: {names:?}");
    assert!(names.contains(name.as_str()), "{names:?}");
    assert_eq!(images.iter().filter(|i| i.hidden).count(), 2, "{images:?}");

    // A checksum file that does not match the image: refused, nothing usable left behind.
    let bad_name = format!("{name} bad");
    upstream.publish("bad", &[3u8; 100_000], true);
    let bad_defs = work.path().join("bad.yml");
    std::fs::write(
        &bad_defs,
        definition(
            &bad_name,
            &upstream.url("bad", "test.img"),
            &upstream.url("bad", "SHA256SUMS"),
        ),
    )
    .unwrap();
    let refused = steward(&["images", "apply", "--os-cloud", &os_cloud], &bad_defs);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("checksum mismatch") && text(&refused).contains("was deleted"),
        "web-download imported it, then it was deleted: {}",
        text(&refused)
    );
    assert!(
        mine(&cloud, &bad_name).await.is_empty(),
        "the unverified image was deleted"
    );

    // The unmanaged image was never touched.
    let untouched = cloud.image(&foreign).await.unwrap().unwrap();
    assert!(
        untouched.properties.is_empty() && untouched.name == name && untouched.status == "queued"
    );

    for image in mine(&cloud, &name).await {
        cloud.delete_image(&image.id).await.unwrap();
    }
    cloud.delete_image(&foreign).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_mid_import_is_finished_by_the_next_run() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let name = format!("Steward Kill {}", std::process::id());
    let upstream = Upstream::start();
    // Large enough that import and verification take a moment.
    let bytes: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    upstream.publish("big", &bytes, false);
    let work = tempfile::tempdir().unwrap();
    let defs = work.path().join("defs.yml");
    std::fs::write(
        &defs,
        definition(
            &name,
            &upstream.url("big", "test.img"),
            &upstream.url("big", "SHA256SUMS"),
        ),
    )
    .unwrap();

    let (again, image) = kill_mid_apply_then_finish(
        &cloud,
        &os_cloud,
        &defs,
        &name,
        &[],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert!(
        again.contains("never verified") || again.contains("interrupted import"),
        "{again}"
    );
    assert_eq!(
        steward(
            &["images", "plan", "--os-cloud", &os_cloud, "--check"],
            &defs
        )
        .status
        .code(),
        Some(0)
    );
    cloud.delete_image(&image.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_verifies_before_creating_and_survives_a_kill() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let name = format!("Steward Upload {}", std::process::id());
    let upstream = Upstream::start();
    let work = tempfile::tempdir().unwrap();

    // A lying checksum file: refused before anything exists in Glance.
    upstream.publish("lie", &[7u8; 200_000], true);
    let lie = work.path().join("lie.yml");
    std::fs::write(
        &lie,
        definition(
            &format!("{name} lie"),
            &upstream.url("lie", "test.img"),
            &upstream.url("lie", "SHA256SUMS"),
        ),
    )
    .unwrap();
    let refused = steward(
        &[
            "images",
            "apply",
            "--os-cloud",
            &os_cloud,
            "--import-method",
            "upload",
        ],
        &lie,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("checksum mismatch")
            && text(&refused).contains("nothing was created in Glance")
            && !text(&refused).contains("was deleted"),
        "{}",
        text(&refused)
    );
    assert!(
        !text(&refused).contains("private until verified"),
        "nothing was created: {}",
        text(&refused)
    );
    assert!(mine(&cloud, &format!("{name} lie")).await.is_empty());

    // A large image (the upload takes seconds, so the kill lands inside it even on a busy
    // machine): SIGKILL once its Glance image exists (download and verification are done, the
    // upload is under way), then let the next run finish.
    let bytes: Vec<u8> = (0..256 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 24) as u8)
        .collect();
    upstream.publish("big", &bytes, false);
    let defs = work.path().join("defs.yml");
    std::fs::write(
        &defs,
        definition(
            &name,
            &upstream.url("big", "test.img"),
            &upstream.url("big", "SHA256SUMS"),
        ),
    )
    .unwrap();
    let (again, image) = kill_mid_apply_then_finish(
        &cloud,
        &os_cloud,
        &defs,
        &name,
        &["--import-method", "upload"],
        std::time::Duration::from_secs(120),
    )
    .await;
    assert!(again.contains("uploaded"), "{again}");
    assert_eq!(image.size, Some(bytes.len() as u64));
    cloud.delete_image(&image.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_only_upstreams_need_the_explicit_opt_in() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let name = format!("Steward MD5 {}", std::process::id());
    let upstream = Upstream::start();
    let bytes = [9u8; 150_000];
    let folder = upstream.dir.path().join("md5");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("test.img"), bytes).unwrap();
    let md5 = Command::new("md5sum")
        .arg(folder.join("test.img"))
        .output()
        .unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(folder.join("MD5SUMS"), format!("{md5}  test.img\n")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let defs = work.path().join("defs.yml");
    std::fs::write(
        &defs,
        definition(
            &name,
            &upstream.url("md5", "test.img"),
            &upstream.url("md5", "MD5SUMS"),
        ),
    )
    .unwrap();

    let plain = steward(
        &["images", "plan", "--os-cloud", &os_cloud, "--check"],
        &defs,
    );
    assert_eq!(plain.status.code(), Some(1), "{}", text(&plain));
    // One located line with the reason in words, and no "no changes" when all is blocked.
    assert!(
        text(&plain).contains(&format!(
            "? {name} latest (line 26): blocked: only md5 checksums (md5 needs --allow-md5"
        )),
        "{}",
        text(&plain)
    );
    assert!(
        text(&plain).contains(
            "1 version(s) blocked: fix them or disable them (enable: false); nothing else to change"
        ),
        "{}",
        text(&plain)
    );
    assert!(!text(&plain).contains("no changes"), "{}", text(&plain));
    assert!(
        !text(&plain).contains("WeakChecksumOnly"),
        "no debug dumps: {}",
        text(&plain)
    );

    let allowed = steward(
        &["images", "apply", "--os-cloud", &os_cloud, "--allow-md5"],
        &defs,
    );
    assert!(allowed.status.success(), "{}", text(&allowed));
    assert!(
        text(&allowed).contains("warning: --allow-md5"),
        "{}",
        text(&allowed)
    );
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].properties["steward_verified"],
        format!("md5:{md5}")
    );
    for image in images {
        cloud.delete_image(&image.id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_checksum_file_format_verifies_an_import() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let base = format!("Steward Formats {}", std::process::id());
    let upstream = Upstream::start();
    let root = upstream.dir.path();
    let sha256 = |b: &[u8]| -> String {
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let sha512 = |b: &[u8]| -> String {
        sha2::Sha512::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let mut yaml = String::from("images:\n");
    // (folder, image file, checksum file, its text, which key names it)
    type Sums = Box<dyn Fn(&[u8]) -> String>;
    let cases: Vec<(&str, &str, String, Sums, &str)> = vec![
        (
            "bsd",
            "disk.img",
            "CHECKSUM".to_owned(),
            Box::new(move |b| format!("SHA512 (disk.img) = {}\n", sha512(b))),
            "checksums_url",
        ),
        (
            "bare",
            "disk.img",
            "disk.img.sha256".to_owned(),
            Box::new(move |b| format!("{}\n", sha256(b))),
            "checksum_url",
        ),
        (
            "osism",
            "ubuntu-2404-kube-v1.33.4.qcow2",
            "ubuntu-2404-kube-v1.33.4.qcow2.CHECKSUM".to_owned(),
            Box::new(move |b| format!("{}  ubuntu-2404-kube-v1.33.4.qcow2\n", sha256(b))),
            "checksums_url",
        ),
    ];
    for (i, (folder, file, sums, text, key)) in cases.iter().enumerate() {
        let bytes = vec![i as u8 + 10; 120_000 + i * 1000];
        std::fs::create_dir_all(root.join(folder)).unwrap();
        std::fs::write(root.join(folder).join(file), &bytes).unwrap();
        std::fs::write(root.join(folder).join(sums), text(&bytes)).unwrap();
        let one = definition(
            &format!("{base} {folder}"),
            &upstream.url(folder, file),
            &upstream.url(folder, sums),
        );
        let one = one.replace("checksums_url:", &format!("{key}:"));
        yaml.push_str(one.strip_prefix("images:\n").unwrap());
    }
    let work = tempfile::tempdir().unwrap();
    let defs = work.path().join("defs.yml");
    std::fs::write(&defs, yaml).unwrap();
    let applied = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(applied.status.success(), "{}", text(&applied));
    for (folder, ..) in &cases {
        let images = mine(&cloud, &format!("{base} {folder}")).await;
        assert_eq!(images.len(), 1, "{folder}: {}", text(&applied));
        let verified = &images[0].properties["steward_verified"];
        let algorithm = if *folder == "bsd" {
            "sha512:"
        } else {
            "sha256:"
        };
        assert!(verified.starts_with(algorithm), "{folder}: {verified}");
        assert_eq!(images[0].status, "active");
        cloud.delete_image(&images[0].id).await.unwrap();
    }
}

/// `OS_CLIENT_CONFIG_FILE` alone names the clouds file, as for the OpenStack client (with no
/// `OS_CLIENT_CONFIG_PATH`, no clouds.yaml in the working folder or the home); a file that does
/// not exist is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_client_config_file_alone_names_the_clouds_file() {
    let Some((os_cloud, _cloud)) = cloud().await else {
        return;
    };
    let clouds = std::env::var("OS_CLIENT_CONFIG_FILE")
        .or_else(|_| std::env::var("OS_CLIENT_CONFIG_PATH"))
        .expect("scripts/openstack exports the clouds file");
    let (_upstream, work, defs) = one_definition("env", "Steward Env", 3);
    let run = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["images", "plan", "--os-cloud", &os_cloud])
            .arg(&defs)
            .env_remove("OS_CLIENT_CONFIG_PATH")
            .env("OS_CLIENT_CONFIG_FILE", file)
            .env("HOME", work.path())
            .current_dir(work.path())
            .output()
            .unwrap()
    };
    let found = run(&clouds);
    assert!(
        text(&found).contains("create"),
        "the plan reached Glance: {}",
        text(&found)
    );
    let missing = run("/nonexistent/clouds.yaml");
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains(
            "/nonexistent/clouds.yaml: no such clouds file (named by OS_CLIENT_CONFIG_FILE)"
        ),
        "{}",
        text(&missing)
    );
}

/// An openrc alone (the `OS_*` variables, no clouds.yaml, no `OS_CLOUD`) names the cloud;
/// without `OS_AUTH_URL` the error says what to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openrc_alone_names_the_cloud() {
    let Some((_os_cloud, _cloud)) = cloud().await else {
        return;
    };
    let (_upstream, work, defs) = one_definition("openrc", "Steward Openrc", 4);
    // The test cloud's clouds.yaml entry, as an openrc would export it.
    let openrc = [
        ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
        ("OS_USERNAME", "admin"),
        ("OS_PASSWORD", "admin-secret"),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_IDENTITY_API_VERSION", "3"),
    ];
    let run = |with_auth_url: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
        command
            .args(["images", "plan"])
            .arg(&defs)
            .env_remove("OS_CLOUD")
            .env_remove("OS_CLIENT_CONFIG_FILE")
            .env_remove("OS_CLIENT_CONFIG_PATH")
            .env("HOME", work.path())
            .current_dir(work.path());
        for (key, value) in openrc {
            if with_auth_url || key != "OS_AUTH_URL" {
                command.env(key, value);
            }
        }
        if !with_auth_url {
            command.env_remove("OS_AUTH_URL");
        }
        command.output().unwrap()
    };
    let found = run(true);
    assert!(
        text(&found).contains("create"),
        "the plan reached Glance: {}",
        text(&found)
    );
    let missing = run(false);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("no cloud named and no openrc in the environment"),
        "{}",
        text(&missing)
    );
}

/// A fixed id (`versions[].id`) is the Glance id of the image apply creates; another
/// definition asking for the same id is refused with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_version_id_is_the_glance_id() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("5e7e0000-0000-4000-8000-{:012x}", nanos % (1u128 << 48));
    let upstream = Upstream::start();
    upstream.publish("fixed", &[5u8; 2000], false);
    let work = tempfile::tempdir().unwrap();
    let name = format!("Steward Fixed {}", std::process::id());
    let write = |file: &str, name: &str| {
        let path = work.path().join(file);
        let mut text = definition(
            name,
            &upstream.url("fixed", "test.img"),
            &upstream.url("fixed", "SHA256SUMS"),
        );
        text.push_str(&format!("        id: {id}\n"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let defs = write("defs.yml", &name);
    let applied = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(applied.status.success(), "{}", text(&applied));
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].id, id, "the fixed id");
    // Every meta key of the definition is a property in Glance.
    for (key, value) in [
        ("architecture", "x86_64"),
        ("hypervisor_type", "qemu"),
        ("hw_disk_bus", "virtio"),
        ("hw_rng_model", "virtio"),
        ("hw_vif_multiqueue_enabled", "true"),
        ("os_distro", "ubuntu"),
        ("os_version", "24.04"),
        ("os_purpose", "generic"),
        ("image_description", "test"),
        ("replace_frequency", "monthly"),
        ("uuid_validity", "last-2"),
        ("provided_until", "none"),
    ] {
        assert_eq!(
            images[0].properties.get(key).map(String::as_str),
            Some(value),
            "{key} in Glance: {:?}",
            images[0].properties
        );
    }

    let other = write("other.yml", &format!("{name} other"));
    let refused = steward(&["images", "apply", "--os-cloud", &os_cloud], &other);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("image id {id} is taken in Glance")),
        "{}",
        text(&refused)
    );
    assert!(
        !text(&refused).contains("uploading instead"),
        "a refused create is not an import failure: {}",
        text(&refused)
    );
    assert_eq!(
        text(&refused).matches("is taken").count(),
        1,
        "said once: {}",
        text(&refused)
    );
    assert!(mine(&cloud, &format!("{name} other")).await.is_empty());
    cloud.delete_image(&id).await.unwrap();
}

/// A definition whose `url` is an archive on an upstream that cannot be reached and whose
/// `mirror_url` is the unpacked image; the checksum is the unpacked image's (as for Garden
/// Linux, Talos or OPNsense).
fn mirrored_definition(name: &str, mirror_url: &str, bytes: &[u8]) -> String {
    let digest: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = definition(name, "http://127.0.0.1:9/upstream/test.img.xz", "unused");
    text.replace(
        "        checksums_url: unused\n",
        &format!("        mirror_url: {mirror_url}\n        checksum: sha256:{digest}\n"),
    )
}

#[tokio::test]
async fn a_mirror_is_imported_from_and_a_failed_glance_import_is_reported_at_once() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // 1. The upstream is unreachable, the mirror holds the unpacked image: apply imports from
    //    the mirror (web-download), verifies against the checksum of what it imported, and
    //    image_source stays the upstream url.
    let mirror = Upstream::start();
    let bytes = [7u8; 3000];
    mirror.publish("mirror", &bytes, false);
    let name = format!("Steward Mirror {}", std::process::id());
    let defs = work.path().join("mirror.yml");
    std::fs::write(
        &defs,
        mirrored_definition(&name, &mirror.url("mirror", "test.img"), &bytes),
    )
    .unwrap();
    let plan = steward(&["images", "plan", "--os-cloud", &os_cloud], &defs);
    assert!(
        text(&plan).contains(&format!(
            "from {} (mirror of http://127.0.0.1:9/upstream/test.img.xz)",
            mirror.url("mirror", "test.img")
        )),
        "{}",
        text(&plan)
    );
    let applied = steward(
        &[
            "images",
            "apply",
            "--os-cloud",
            &os_cloud,
            "--import-method",
            "web-download",
        ],
        &defs,
    );
    assert!(applied.status.success(), "{}", text(&applied));
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].status, "active");
    assert_eq!(images[0].visibility, "public");
    assert_eq!(images[0].size, Some(bytes.len() as u64));
    assert_eq!(
        images[0].properties.get("image_source").map(String::as_str),
        Some("http://127.0.0.1:9/upstream/test.img.xz")
    );
    for image in &images {
        cloud.delete_image(&image.id).await.unwrap();
    }

    // 2. A mirror Glance cannot fetch from: Glance accepts the web-download, then fails it.
    //    Reported at the next poll with Glance's reason (not after the 30 min timeout) …
    let refusing = Upstream::start_refusing_glance();
    refusing.publish("mirror", &bytes, false);
    let name = format!("Steward Refused {}", std::process::id());
    let defs = work.path().join("refused.yml");
    std::fs::write(
        &defs,
        mirrored_definition(&name, &refusing.url("mirror", "test.img"), &bytes),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let failed = steward(
        &[
            "images",
            "apply",
            "--os-cloud",
            &os_cloud,
            "--import-method",
            "web-download",
        ],
        &defs,
    );
    assert!(!failed.status.success(), "{}", text(&failed));
    assert!(
        text(&failed).contains("Glance failed the web-download import"),
        "{}",
        text(&failed)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "reported after {:?}",
        started.elapsed()
    );
    assert!(
        mine(&cloud, &name).await.is_empty(),
        "the failed image was deleted"
    );
    // … and `auto` uploads it instead: one verified, public image.
    let uploaded = steward(&["images", "apply", "--os-cloud", &os_cloud], &defs);
    assert!(uploaded.status.success(), "{}", text(&uploaded));
    assert!(
        text(&uploaded).contains("uploading instead"),
        "{}",
        text(&uploaded)
    );
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].status, "active");
    assert_eq!(images[0].visibility, "public");
    for image in &images {
        cloud.delete_image(&image.id).await.unwrap();
    }

    // 3. Told to, a mirror Glance fails is replaced by the reachable upstream `url`.
    let upstream = Upstream::start();
    upstream.publish("up", &bytes, false);
    let name = format!("Steward Fallback {}", std::process::id());
    let defs = work.path().join("fallback.yml");
    let text_of = mirrored_definition(&name, &refusing.url("mirror", "test.img"), &bytes).replace(
        "http://127.0.0.1:9/upstream/test.img.xz",
        &upstream.url("up", "test.img"),
    );
    std::fs::write(&defs, text_of).unwrap();
    let fell_back = steward(
        &[
            "images",
            "apply",
            "--os-cloud",
            &os_cloud,
            "--import-method",
            "web-download",
            "--fallback-to-upstream",
        ],
        &defs,
    );
    assert!(fell_back.status.success(), "{}", text(&fell_back));
    assert!(
        text(&fell_back).contains("importing from the upstream"),
        "{}",
        text(&fell_back)
    );
    let images = mine(&cloud, &name).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].status, "active");
    for image in &images {
        cloud.delete_image(&image.id).await.unwrap();
    }
}

/// A whole catalogue in openstack-image-manager's layout (`tests/fixtures/catalogue`, written
/// for these tests in that schema with every key it allows): `validate` finds nothing, `plan`
/// plans every version (none blocked), and `apply` imports each one verified — from the mirror
/// where there is one (the archive upstream included, whose checksum is the unpacked image's),
/// with `image_source` the upstream `url` and every meta key a property.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_catalogue_in_the_upstream_layout_validates_plans_and_applies() {
    let Some((os_cloud, cloud)) = cloud().await else {
        return;
    };
    let hex = |d: &[u8]| -> String { d.iter().map(|b| format!("{b:02x}")).collect() };
    let upstream = Upstream::start();
    let mirror = Upstream::start();
    let put = |server: &Upstream, path: &str, bytes: &[u8]| {
        let file = server.dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    };
    let ubuntu = vec![21u8; 40_000];
    put(
        &upstream,
        "ubuntu/noble/20261201/noble-server-cloudimg-amd64.img",
        &ubuntu,
    );
    put(
        &upstream,
        "ubuntu/noble/20261201/SHA256SUMS",
        format!(
            "{} *noble-server-cloudimg-amd64.img\n",
            hex(&sha2::Sha256::digest(&ubuntu))
        )
        .as_bytes(),
    );
    let debian = vec![22u8; 41_000];
    let debian_file = "debian-12-genericcloud-amd64-20261130-1950.qcow2";
    put(
        &upstream,
        &format!("debian/bookworm/20261130-1950/{debian_file}"),
        &debian,
    );
    put(
        &upstream,
        "debian/bookworm/20261130-1950/SHA512SUMS",
        format!("{}  {debian_file}\n", hex(&sha2::Sha512::digest(&debian))).as_bytes(),
    );
    put(&mirror, "debian-12/20261130-debian-12.qcow2", &debian);
    let alma = vec![23u8; 42_000];
    let alma_file = "AlmaLinux-9-GenericCloud-9.7-20261115.x86_64.qcow2";
    put(
        &upstream,
        &format!("almalinux/9/cloud/x86_64/images/{alma_file}"),
        &alma,
    );
    put(
        &upstream,
        "almalinux/9/cloud/x86_64/images/CHECKSUM",
        format!(
            "SHA256 ({alma_file}) = {}\n",
            hex(&sha2::Sha256::digest(&alma))
        )
        .as_bytes(),
    );
    let garden = vec![24u8; 43_000];
    put(&mirror, "gardenlinux/1877.3-gardenlinux.qcow2", &garden);
    let cirros = vec![25u8; 44_000];
    put(
        &upstream,
        "cirros/0.6.3/cirros-0.6.3-x86_64-disk.img",
        &cirros,
    );

    let run = format!("{}", std::process::id());
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/catalogue/etc/images");
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("etc/images");
    std::fs::create_dir_all(&folder).unwrap();
    let base = |server: &Upstream| format!("http://127.0.0.1:{}", server.port);
    let mut files = 0;
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("@UPSTREAM@", &base(&upstream))
            .replace("@MIRROR@", &base(&mirror))
            .replace("@RUN@", &run)
            .replace("@SHA256_GARDENLINUX@", &hex(&sha2::Sha256::digest(&garden)))
            .replace("@SHA512_CIRROS@", &hex(&sha2::Sha512::digest(&cirros)));
        std::fs::write(folder.join(path.file_name().unwrap()), text).unwrap();
        files += 1;
    }
    assert_eq!(files, 5);

    let validated = steward(&["images", "validate"], &folder);
    assert!(validated.status.success(), "{}", text(&validated));
    let plan = steward(&["images", "plan", "--os-cloud", &os_cloud], &folder);
    assert!(!text(&plan).contains("blocked"), "{}", text(&plan));
    assert_eq!(
        text(&plan).matches("+ create").count(),
        5,
        "{}",
        text(&plan)
    );
    assert!(
        text(&plan).contains(&format!(
            "from {}/gardenlinux/1877.3-gardenlinux.qcow2 (mirror of http://127.0.0.1:9/",
            base(&mirror)
        )),
        "{}",
        text(&plan)
    );
    let applied = steward(&["images", "apply", "--os-cloud", &os_cloud], &folder);
    assert!(applied.status.success(), "{}", text(&applied));
    let again = steward(
        &["images", "plan", "--os-cloud", &os_cloud, "--check"],
        &folder,
    );
    assert!(
        again.status.success(),
        "a second plan changes nothing: {}",
        text(&again)
    );

    for (name, bytes, source) in [
        ("Ubuntu 24.04", &ubuntu, format!("{}/ubuntu/noble/20261201/noble-server-cloudimg-amd64.img", base(&upstream))),
        ("Debian 12", &debian, format!("{}/debian/bookworm/20261130-1950/{debian_file}", base(&upstream))),
        ("AlmaLinux 9", &alma, format!("{}/almalinux/9/cloud/x86_64/images/{alma_file}", base(&upstream))),
        ("Garden Linux", &garden, "http://127.0.0.1:9/gardenlinux/releases/1877.3/openstack-gardener_prod-amd64-1877.3.tar.xz".to_owned()),
        ("Cirros", &cirros, format!("{}/cirros/0.6.3/cirros-0.6.3-x86_64-disk.img", base(&upstream))),
    ] {
        let name = format!("{name} {run}");
        let images = mine(&cloud, &name).await;
        assert_eq!(images.len(), 1, "{name}: {images:?}");
        let image = &images[0];
        assert_eq!(image.status, "active", "{name}");
        assert_eq!(image.visibility, "public", "{name}");
        assert_eq!(image.size, Some(bytes.len() as u64), "{name}");
        assert_eq!(
            image.properties.get("image_source"),
            Some(&source),
            "{name}: image_source is the upstream url"
        );
        assert!(image.properties.contains_key("steward_verified"), "{name}");
    }
    let debian_image = &mine(&cloud, &format!("Debian 12 {run}")).await[0];
    for (key, value) in [
        ("hw_scsi_model", "virtio-scsi"),
        ("hw_watchdog_action", "reset"),
        ("hw_firmware_type", "uefi"),
        ("hw_machine_type", "q35"),
        ("hw_vif_multiqueue_enabled", "true"),
        ("hotfix_hours", "0"),
        ("patchlevel", "12.12"),
        ("os_version", "12.12"),
        ("provided_until", "2028-06-30"),
    ] {
        assert_eq!(
            debian_image.properties.get(key).map(String::as_str),
            Some(value),
            "{key}: {:?}",
            debian_image.properties
        );
    }
    for name in [
        "Ubuntu 24.04",
        "Debian 12",
        "AlmaLinux 9",
        "Garden Linux",
        "Cirros",
    ] {
        for image in mine(&cloud, &format!("{name} {run}")).await {
            cloud.delete_image(&image.id).await.unwrap();
        }
    }
}
