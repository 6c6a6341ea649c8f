//! Helpers: run the binary with a deadline, parse its JSON lines.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A TCP port free on 127.0.0.1 now (the OS picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn clip() -> PathBuf {
    repo().join("tests/data/street_topdown_640x360.mp4")
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Parsed stdout lines of the given `type`.
    pub fn lines(&self, kind: &str) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("stdout line {l:?}: {e}")))
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// The error line `junction` printed last.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rfind(|l| l.starts_with("junction: error:") || l.starts_with("junction-centre: error:"))
            .unwrap_or("")
    }
}

/// Runs `junction` from the repo root; kills it (by its PID, our own child) if it outlives `deadline`.
pub fn junction(args: &[&str], deadline: Duration) -> Output {
    junction_env(args, &[], deadline)
}

/// `junction` with `args` from the repo root, logging at `log`, stdin closed, stdout and stderr piped
/// (a test that does not read one sets it to null, or a full pipe stalls the run).
/// `["centre", …]` runs the centre's own binary, `junction-centre …`.
pub fn command(args: &[&str], log: &str) -> Command {
    let (exe, args) = match args.split_first() {
        Some((&"centre", rest)) => (centre_bin(), rest),
        _ => (PathBuf::from(env!("CARGO_BIN_EXE_junction")), args),
    };
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(repo())
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The centre's binary (package junction-centre, another package of the workspace): beside this
/// build's `junction`. A whole `cargo test` builds it (the package has tests); a run filtered to this
/// package builds it here, once, with the same profile.
pub fn centre_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let junction = PathBuf::from(env!("CARGO_BIN_EXE_junction"));
            let dir = junction.parent().expect("the binary's folder");
            let mut build = Command::new(env!("CARGO"));
            build.args(["build", "--quiet", "--package", "junction-centre", "--bin", "junction-centre"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.current_dir(repo()).status().expect("cargo");
            assert!(status.success(), "cargo build --package junction-centre failed");
            dir.join("junction-centre")
        })
        .clone()
}

/// Our own `junction` child: a failed assertion must not leave it running, so it is killed (by its
/// PID, through `Child`, which never signals a reaped process) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `junction run URI` with one line, the store `db`, and /metrics and /snapshot on `port`; output
/// discarded.
pub fn snapshot_run(uri: &str, db: &Path, port: u16) -> Running {
    let addr = format!("127.0.0.1:{port}");
    let args = ["run", uri, "--line", "320,60,320,220", "--store", db.to_str().unwrap(), "--http", &addr];
    Running(command(&args, "warn").arg("--snapshots").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap())
}

/// Starts [`command`]; the caller waits for the child (or signals it, by its PID).
pub fn spawn(args: &[&str], log: &str) -> Child {
    command(args, log).spawn().expect("spawn junction")
}

/// Sends `sig` ("TERM", "KILL", "STOP", …) to our own child, by its PID; whether `kill` delivered it.
pub fn try_signal(child: &Child, sig: &str) -> bool {
    Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().is_ok_and(|s| s.success())
}

/// [`try_signal`], which must succeed.
pub fn signal(child: &Child, sig: &str) {
    assert!(try_signal(child, sig), "kill -{sig} {}", child.id());
}

pub fn junction_env(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Output {
    let mut cmd = command(args, "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn junction");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_at_most(&mut child, started, deadline);
    Output {
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// Waits for our own child; kills it (by its PID) and fails the test if it outlives `deadline` from
/// `started`: no test can hang.
pub fn wait_at_most(child: &mut Child, started: Instant, deadline: Duration) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("junction hung: still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts a refused run: exit 1, no panic, and one error line containing every one of `needles`.
pub fn assert_refused(out: &Output, needles: &[&str]) {
    assert_eq!(out.code, Some(1), "exit code; stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "panic:\n{}", out.stderr);
    let line = out.error_line();
    assert!(!line.is_empty(), "no error line in stderr:\n{}", out.stderr);
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
}

/// Validates `instance` against a JSON Schema in deploy/schema/ (formats such as date-time checked).
pub fn assert_schema(schema_file: &str, instance: &serde_json::Value) {
    let path = repo().join("deploy/schema").join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("schema JSON");
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).expect("a valid schema");
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{schema_file}: {instance}\n{}", errors.join("\n"));
}

/// A plain HTTP/1.1 GET on 127.0.0.1: (status, body); `None` while nothing listens there.
pub fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    Some((status, raw[split + 4..].to_vec()))
}

/// Value of one sample line `name{labels} value` of a metrics text (labels exactly as printed).
pub fn metric_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A copy of the shipped YOLOX card, edited by `edit`, written to `dir`: fed square, pointing at the
/// fixed-size export `models/yolox_nano.onnx` ([1, 3, 416, 416]) with its sha256, `rectangular` left
/// out. The input the Python references were made with.
pub fn square_card(dir: &std::path::Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    use sha2::Digest;
    let text = std::fs::read_to_string(repo().join("models/yolox_nano.toml")).unwrap();
    let model = repo().join("models/yolox_nano.onnx");
    let sha: String = sha2::Sha256::digest(std::fs::read(&model).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("rectangular"))
        .map(|l| match l.split_whitespace().next() {
            Some("file") => format!("file = {:?}", model.to_str().unwrap()),
            Some("sha256") => format!("sha256 = {sha:?}"),
            _ => l.to_owned(),
        })
        .collect();
    let path = dir.join("yolox_square.toml");
    std::fs::write(&path, edit(lines.join("\n"))).unwrap();
    path
}
