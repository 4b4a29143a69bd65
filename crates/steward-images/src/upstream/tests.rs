//! Upstream resolution against a local HTTP server that plays the upstreams.

use std::path::Path;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::{UpstreamProblem, natural_cmp, resolve};
use crate::definition::parse_file;

const SHA256: &str = "7d6355852aeb6dbcd191bcda7cd74f1536cfe5cbf8a10495a7283a8396e4b75b";
const DATE: &str = "Fri, 20 Nov 2026 08:00:00 GMT";

async fn upstream() -> String {
    let image = || async { ([(header::LAST_MODIFIED, DATE)], "qcow2-bytes") };
    let app = Router::new()
        // Ubuntu-like release tree: GNU-binary SHA256SUMS, Last-Modified dates the build.
        .route(
            "/ubuntu/release/ubuntu-24.04-server-cloudimg-amd64.img",
            get(image).head(image),
        )
        .route(
            "/ubuntu/release/SHA256SUMS",
            get(|| async { format!("{SHA256} *ubuntu-24.04-server-cloudimg-amd64.img\n") }),
        )
        // CirrOS-like: a plain-text newest version, MD5SUMS only.
        .route(
            "/cirros/version/released",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "0.6.10\n") }),
        )
        .route(
            "/cirros/0.6.9/cirros-0.6.9-x86_64-disk.img",
            get(image).head(image),
        )
        .route(
            "/cirros/0.6.9/MD5SUMS",
            get(|| async { "0123456789abcdef0123456789abcdef  cirros-0.6.9-x86_64-disk.img\n" }),
        )
        // A sums file that does not list the image.
        .route(
            "/other/img.qcow2",
            get(|| async { "x" }).head(|| async { "x".into_response() }),
        )
        .route(
            "/other/SHA256SUMS",
            get(|| async { format!("{SHA256}  something-else.qcow2\n") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn definition(name: &str, multi: bool, extra: &str, versions: &str) -> String {
    format!(
        "images:\n  - name: {name}\n    enable: true\n    format: qcow2\n    login: x\n    min_disk: 1\n    min_ram: 64\n    \
         status: active\n    visibility: public\n    multi: {multi}\n    tags: []\n{extra}    meta:\n      \
         architecture: x86_64\n      os_distro: ubuntu\n      os_version: '1'\n      os_purpose: generic\n      \
         replace_frequency: never\n      provided_until: none\n    versions:\n{versions}"
    )
}

#[tokio::test]
async fn a_latest_pointer_with_sha256sums_resolves_cleanly() {
    let base = upstream().await;
    let yaml = definition(
        "Ubuntu 24.04",
        true,
        "",
        &format!(
            "      - version: latest\n        url: {base}/ubuntu/release/ubuntu-24.04-server-cloudimg-amd64.img\n        \
             checksums_url: {base}/ubuntu/release/SHA256SUMS\n"
        ),
    );
    let (defs, problems) = parse_file(Path::new("u.yml"), &yaml);
    assert_eq!(problems, vec![]);
    let r = resolve(&super::client(), &defs[0]).await;
    assert_eq!(r.versions[0].problems, vec![]);
    assert_eq!(
        r.versions[0].digest.as_deref(),
        Some(format!("sha256:{SHA256}").as_str())
    );
    assert_eq!(
        r.versions[0].build_date.unwrap().to_string(),
        "2026-11-20",
        "from Last-Modified"
    );
    assert_eq!(r.newest.as_deref(), Some("20261120"));
    assert!(!r.behind, "a pointer is never behind");
    assert_eq!(r.problems, vec![]);
}

#[tokio::test]
async fn a_pinned_definition_behind_upstream_with_md5_only_is_reported() {
    let base = upstream().await;
    let yaml = definition(
        "Cirros",
        false,
        &format!("    latest_url: {base}/cirros/version/released\n"),
        &format!(
            "      - version: 0.6.9\n        url: {base}/cirros/0.6.9/cirros-0.6.9-x86_64-disk.img\n        \
             checksums_url: {base}/cirros/0.6.9/MD5SUMS\n        build_date: 2024-09-26\n"
        ),
    );
    let (defs, _) = parse_file(Path::new("c.yml"), &yaml);
    let r = resolve(&super::client(), &defs[0]).await;
    assert_eq!(r.newest.as_deref(), Some("0.6.10"));
    assert_eq!(r.listed, "0.6.9");
    assert!(r.behind, "0.6.10 > 0.6.9 in natural order");
    assert_eq!(
        r.versions[0].problems,
        vec![UpstreamProblem::WeakChecksumOnly {
            algorithm: "md5".to_owned()
        }]
    );
}

#[tokio::test]
async fn gone_urls_unlisted_files_and_missing_pointers() {
    let base = upstream().await;
    let yaml = definition(
        "Other",
        false,
        "",
        &format!(
            "      - version: '1'\n        url: {base}/other/img.qcow2\n        checksums_url: {base}/other/SHA256SUMS\n        build_date: 2026-01-01\n\
             \x20     - version: '2'\n        url: {base}/gone/img.qcow2\n        checksum_url: {base}/gone/img.qcow2.sha256\n        build_date: 2026-02-01\n\
             \x20     - version: '3'\n        url: {base}/other/img.qcow2\n"
        ),
    );
    let (defs, _) = parse_file(Path::new("o.yml"), &yaml);
    let r = resolve(&super::client(), &defs[0]).await;
    assert!(
        matches!(&r.versions[0].problems[..], [UpstreamProblem::ChecksumFile { detail }] if detail.contains("no entry for \"img.qcow2\"")),
        "{:?}",
        r.versions[0].problems
    );
    assert!(
        matches!(
            &r.versions[1].problems[..],
            [
                UpstreamProblem::UrlGone { status: 404, .. },
                UpstreamProblem::ChecksumFile { .. }
            ]
        ),
        "{:?}",
        r.versions[1].problems
    );
    assert_eq!(
        r.versions[2].problems,
        vec![UpstreamProblem::NoChecksum, UpstreamProblem::NoBuildDate]
    );
    assert_eq!(r.problems, vec![UpstreamProblem::NoLatestPointer]);
}

#[tokio::test]
async fn a_failing_latest_url_is_reported_with_its_cause() {
    let base = upstream().await;
    for (pointer, cause) in [
        (
            format!("{base}/cirros/version/missing"),
            "HTTP 404".to_owned(),
        ),
        (
            "http://127.0.0.1:9/version".to_owned(),
            "unreachable".to_owned(),
        ),
    ] {
        let yaml = definition(
            "Cirros",
            false,
            &format!("    latest_url: {pointer}\n"),
            &format!(
                "      - version: 0.6.9\n        url: {base}/cirros/0.6.9/cirros-0.6.9-x86_64-disk.img\n        \
                 checksums_url: {base}/cirros/0.6.9/MD5SUMS\n        build_date: 2024-09-26\n"
            ),
        );
        let (defs, _) = parse_file(Path::new("c.yml"), &yaml);
        let r = resolve(&super::client(), &defs[0]).await;
        assert_eq!(r.newest, None);
        match &r.problems[..] {
            [UpstreamProblem::LatestPointer { url, detail }] => {
                assert_eq!(url, &pointer);
                assert!(detail.starts_with(&cause), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.problems[0]
                .to_string()
                .starts_with(&format!("latest_url {pointer}: {cause}"))
        );
    }
}

#[test]
fn natural_order() {
    use std::cmp::Ordering::*;
    assert_eq!(natural_cmp("0.6.10", "0.6.9"), Greater);
    assert_eq!(natural_cmp("v1.33.10", "v1.33.4"), Greater);
    assert_eq!(natural_cmp("20241110", "20241110"), Equal);
    assert_eq!(natural_cmp("1.2", "1.2.1"), Less);
}
