//! The deployment files, each checked by the tool its world uses: systemd-analyze for the unit,
//! promtool for the Prometheus configuration and alert rules (with unit tests of the alerts),
//! kubernetes-validate (the API's own schemas) for the manifests, and the metric names the Grafana
//! dashboard queries against the ones junction exports.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::common::repo;

fn deploy(p: &str) -> PathBuf {
    repo().join("deploy").join(p)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh installs it)"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A unit, with ExecStart pointed at the binary under test (verify checks that it exists), passes
/// `systemd-analyze verify` and scores `threshold` tenths or below on `systemd-analyze security`
/// (exposure 0, locked down, to 10, unsafe), and holds `keys`.
fn check_unit(name: &str, threshold: u32, keys: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy(&format!("systemd/{name}")))
        .unwrap()
        .replace("/usr/local/bin/junction-centre", &crate::common::centre_bin().display().to_string())
        .replace("/usr/local/bin/junction ", &format!("{} ", env!("CARGO_BIN_EXE_junction")));
    let path = dir.path().join(name);
    std::fs::write(&path, &unit).unwrap();
    let (ok, out) = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(ok && !out.contains(name), "systemd-analyze verify:\n{out}");
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", &format!("--threshold={threshold}")])
        .arg(&path));
    assert!(ok, "systemd-analyze security:\n{out}");
    for key in keys {
        assert!(unit.contains(key), "{name}: {key}");
    }
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    // 3.0 or below (1.9 now).
    check_unit(
        "junction.service",
        30,
        &["ProtectSystem=strict", "StateDirectory=junction", "Restart=always", "WatchdogSec=", "Type=notify"],
    );
}

/// The centre's ingester: the same checks, tighter (it needs no device and no state on disk).
#[test]
fn centre_systemd_unit_verifies_and_is_hardened() {
    check_unit(
        "junction-centre.service",
        20,
        &["junction-centre --mqtt", "--client-id", "Restart=always", "WatchdogSec=", "Type=notify"],
    );
}

#[test]
fn prometheus_config_and_alerts_check_and_fire() {
    let (ok, out) = run(Command::new("promtool").args(["check", "config"]).arg(deploy("prometheus/prometheus.yml")));
    assert!(ok, "promtool check config:\n{out}");
    // The alert unit tests: each alert fires when it should and stays quiet when it should not.
    let (ok, out) = run(Command::new("promtool").args(["test", "rules"]).arg(deploy("prometheus/alerts_test.yml")));
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    let validate = repo().join(".venv/bin/kubernetes-validate");
    let manifests: Vec<PathBuf> = std::fs::read_dir(deploy("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(manifests.len() >= 3, "{manifests:?}");
    let (ok, out) = run(Command::new(&validate).args(["-k", "1.30.0", "--strict"]).args(&manifests));
    assert!(ok, "kubernetes-validate:\n{out}");
    for kind in ["daemonset/junction", "configmap/junction-site", "namespace/junction"] {
        assert!(out.contains(&format!("passed for resource {kind}")), "{kind}:\n{out}");
    }
    // The checker bites: a misspelt field in the DaemonSet is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("daemonset.yaml");
    let text =
        std::fs::read_to_string(deploy("k8s/daemonset.yaml")).unwrap().replace("readinessProbe:", "readynessProbe:");
    std::fs::write(&broken, text).unwrap();
    let (ok, out) = run(Command::new(&validate).args(["-k", "1.30.0", "--strict"]).arg(&broken));
    assert!(!ok, "a misspelt field passed:\n{out}");
}

#[test]
fn grafana_dashboard_queries_metrics_junction_exports() {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/junction.json")).unwrap()).unwrap();
    // What junction exports (a metric family without samples yet is still queryable later).
    let metrics = junction::telemetry::Metrics::new(&[("c".to_string(), Duration::from_secs(10))]);
    let exported = metrics.exported_names();
    assert!(exported.iter().any(|n| n == "junction_stage_duration_seconds_bucket"), "{exported:?}");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut queried = 0;
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("junction_"))
            {
                assert!(
                    exported.iter().any(|e| e == name),
                    "panel {:?} queries {name}, not exported: {exported:?}",
                    p["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10);
    // The alert rules too.
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    for name in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("junction_")) {
        assert!(exported.iter().any(|e| e == name), "alerts.yml queries {name}, not exported");
    }
}

#[test]
fn jetson_dockerfile_is_well_formed() {
    let text = std::fs::read_to_string(deploy("jetson/Dockerfile")).unwrap();
    const INSTRUCTIONS: [&str; 18] = [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
    ];
    let mut continued = false;
    let mut froms = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !continued {
            let word = t.split_whitespace().next().unwrap();
            assert!(INSTRUCTIONS.contains(&word), "line {}: {word} is not a Dockerfile instruction", i + 1);
            froms += usize::from(word == "FROM");
            // Every COPY from the build context names something in the repository.
            if word == "COPY" && !t.contains("--from=") {
                let parts: Vec<&str> = t.split_whitespace().collect();
                for src in &parts[1..parts.len() - 1] {
                    assert!(repo().join(src).exists(), "line {}: COPY {src}: not in the repository", i + 1);
                }
            }
        }
        continued = t.ends_with('\\');
    }
    assert_eq!(froms, 2, "a build stage and a runtime stage");

    // The health check runs what the runtime image has: junction itself, not curl.
    let health = text.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(health.contains("/usr/local/bin/junction\", \"probe\""), "{health}");
    assert!(!text.contains("/usr/bin/curl") && !health.contains("wget"), "{health}");
    // The pinned GPU build of ONNX Runtime is one junction accepts, and ORT_DYLIB_PATH names the
    // versioned file that wheel ships.
    let pinned =
        text.lines().find_map(|l| l.strip_prefix("ARG ORT_GPU=")).expect("ARG ORT_GPU=<version>").trim().to_owned();
    assert_eq!(junction::detect::ORT_SUPPORTED.contains(&pinned), Some(true), "ORT_GPU={pinned} outside the range");
    assert!(text.contains("\"onnxruntime-gpu==${ORT_GPU}\""), "the wheel installed is the pinned one");
    assert!(text.contains("ORT_DYLIB_PATH=/opt/junction/onnxruntime/libonnxruntime.so.${ORT_GPU}"));
    assert!(text.contains("cp \"$capi/libonnxruntime.so.${ORT_GPU}\""), "the versioned library is copied");
}

#[test]
fn fleet_state_folder_is_made_writable_for_the_unprivileged_user() {
    // junction runs as uid 10001 on a hostPath that DirectoryOrCreate makes root-owned: an init
    // container hands it over before junction starts.
    let text = std::fs::read_to_string(deploy("k8s/daemonset.yaml")).unwrap();
    assert!(text.contains("runAsUser: 10001"));
    let init = text.split("initContainers:").nth(1).expect("an init container").split("containers:").next().unwrap();
    assert!(init.contains("command: [\"/bin/chown\", \"10001:10001\", \"/var/lib/junction\"]"), "{init}");
    assert!(init.contains("add: [\"CHOWN\"]") && init.contains("drop: [\"ALL\"]"), "{init}");
    assert!(init.contains("mountPath: /var/lib/junction"), "{init}");
}
