//! The command line as an operator meets it: help, `config check`, exit codes, errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::Command;

fn steward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(args)
        .env_remove("STEWARD_CONFIG")
        .output()
        .unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn help_teaches_the_defaults() {
    let out = steward(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("127.0.0.1:8788"), "{text}");
    assert!(text.contains("meter"), "{text}");
    let out = steward(&["meter", "serve", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("SIGTERM"));
}

#[test]
fn config_check_accepts_the_documented_examples() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["config", "check"])
            .arg(&path)
            .env("STEWARD_DB_PASSWORD", "example")
            .env("STEWARD_AMQP_PASSWORD", "example")
            .env("STEWARD_HTTP_TOKEN", "example")
            .env(
                "STEWARD_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected example configs in {}",
        docs.display()
    );
}

#[test]
fn config_check_points_at_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "bad.yaml",
        "meter:\n  amqp:\n    queue: notifications.info\n    prefetch: 10\n",
    );
    let out = steward(&["config", "check", &path]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{path}:3:5: meter.amqp.queue: must not be a producers' shared queue"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{path}:4:5: meter.amqp.prefetch:")),
        "{text}"
    );

    let typo = write(
        &dir,
        "typo.yaml",
        "meter:\n  http:\n    listen: 127.0.0.1:8788\n    lisen_backlog: 5\n",
    );
    let out = steward(&["config", "check", &typo]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("{typo}:4:")), "{text}");
    assert!(text.contains("lisen_backlog"), "{text}");
    assert!(text.contains("did you mean `listen_backlog`?"), "{text}");

    // Five mistakes, five located problems, one run.
    let five = write(
        &dir,
        "five.yaml",
        "meter:\n  store:\n    url: mysql://db\n  amqp:\n    prefetch: many\n    queu: q\n  \
         products:\n    - product: x\n      resource: instance\n      unit: hour\n    \
         - product: \"vol:{flavour}\"\n      resource: volume\n      unit: GiB-hour\n      \
         attribute: size_gb\nlog:\n  format: yaml\n",
    );
    let out = steward(&["config", "check", &five]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (line, field) in [
        (3, "meter.store.url"),
        (5, "meter.amqp.prefetch"),
        (6, "meter.amqp.queu"),
        (11, "meter.products[1]"),
        (16, "log.format"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{five}:{line}:"))
                    && l.contains(&format!(": {field}: "))),
            "{field} at line {line}: {text}"
        );
    }

    let good = write(
        &dir,
        "good.yaml",
        "meter:\n  http:\n    listen: 127.0.0.1:9999\n",
    );
    let out = steward(&["config", "check", &good]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{good}: ok\n")
    );
}

#[test]
fn unset_environment_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "env.yaml",
        "meter:\n  store:\n    url: ${STEWARD_TEST_UNSET_VARIABLE}\n",
    );
    let out = steward(&["config", "check", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        ":3:10: meter.store.url: environment variable STEWARD_TEST_UNSET_VARIABLE is not set"
    ));
}

#[test]
fn runtime_errors_exit_2_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.yaml",
        "meter:\n  store:\n    url: postgres://steward:hunter2@127.0.0.1:1/nowhere\n    connect_timeout_secs: 1\n",
    );
    let out = steward(&["--config", &path, "meter", "status"]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.starts_with("error: opening store postgres://steward:***@127.0.0.1:1/nowhere"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2"),
        "the password must not be printed: {text}"
    );
    let missing = steward(&["--config", "/nonexistent/steward.yaml", "meter", "status"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/steward.yaml: cannot read")
    );
}

#[test]
fn read_commands_never_create_a_store_and_migrate_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/s.db");
    let path = write(
        &dir,
        "c.yaml",
        &format!("meter:\n  store:\n    url: sqlite://{}\n", db.display()),
    );
    for args in [
        &["meter", "status"][..],
        &["meter", "gaps"],
        &["meter", "quarantine", "list"],
        &["meter", "report", "--period", "2026-10"],
    ] {
        let out = steward(&[&["--config", path.as_str()][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("no store at {}", db.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            !db.exists() && !db.parent().unwrap().exists(),
            "{args:?} created the store"
        );
    }
    let out = steward(&["--config", &path, "meter", "migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = steward(&["--config", &path, "meter", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("records 0  facts 0  quarantined 0  gaps 0 (0 open)"),
        "{text}"
    );
}

#[test]
fn images_validate_accepts_the_shipped_catalogue_and_locates_problems() {
    let catalogue = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let out = steward(&["images", "validate", catalogue.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 definition(s), 0 error(s), 0 warning(s)")
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(catalogue.join("cirros.yml")).unwrap();
    let bad = write(
        &dir,
        "bad.yml",
        &text.replace("os_distro: cirros", "os_distro: CirrOS"),
    );
    let out = steward(&["images", "validate", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{bad}:")), "{stdout}");
    assert!(
        stdout.contains("error: images[0].meta.os_distro: \"CirrOS\" is not one of"),
        "{stdout}"
    );
    let json = steward(&["images", "validate", &bad, "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["errors"], 1);
    assert_eq!(json["problems"][0]["field"], "images[0].meta.os_distro");
}

#[test]
fn config_check_refuses_an_empty_token_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "token.yaml",
        "meter:\n  http:\n    bearer_token: ${STEWARD_HTTP_TOKEN}\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["config", "check", &path])
        .env_remove("STEWARD_CONFIG")
        .env("STEWARD_HTTP_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{path}:3:5: meter.http.bearer_token: is empty")),
        "{text}"
    );
    // `serve` refuses the same file instead of starting without authentication.
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["--config", &path, "meter", "serve"])
        .env_remove("STEWARD_CONFIG")
        .env("STEWARD_HTTP_TOKEN", "  ")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bearer_token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
