//! Bad input: one clear error line naming the thing, exit 1, never a panic or a hang.

use std::time::Duration;

use crate::common::{assert_refused, clip, junction, junction_env, repo, square_card};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn missing_file() {
    let out = junction(&["detect", "/nonexistent/clip.mp4"], DEADLINE);
    assert_refused(&out, &["/nonexistent/clip.mp4", "no such file"]);
}

#[test]
fn text_file_is_not_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "count the cars on the north approach\n".repeat(200)).unwrap();
    let out = junction(&["detect", path.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[path.to_str().unwrap(), "not a video"]);
}

#[test]
fn truncated_mp4() {
    // The clip keeps its index (moov) at the end: the first 300 kB hold video data but no index.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.mp4");
    let bytes = std::fs::read(clip()).unwrap();
    std::fs::write(&path, &bytes[..300_000]).unwrap();
    let out = junction(&["detect", path.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[path.to_str().unwrap(), "qtdemux"]);
}

#[test]
fn rtsp_connection_refused() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("rtsp://127.0.0.1:{port}/stream");
    let out = junction(&["detect", &uri, "--open-timeout", "5"], DEADLINE);
    assert_refused(&out, &[&uri]);
    assert!(out.elapsed < Duration::from_secs(30), "took {:?}", out.elapsed);
}

#[test]
fn rtsp_silent_server_times_out() {
    // Accepts the TCP connection and never answers the RTSP request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(8));
        drop(conn);
    });
    let uri = format!("rtsp://user:secret@127.0.0.1:{port}/stream");
    let out = junction(&["detect", &uri, "--open-timeout", "3"], DEADLINE);
    assert_refused(&out, &["127.0.0.1", "3s"]);
    assert!(!out.stderr.contains("secret"), "password leaked:\n{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(20), "took {:?}", out.elapsed);
    let _ = hold.join();
}

#[test]
fn model_sha256_differs_from_card() {
    let dir = tempfile::tempdir().unwrap();
    let card = square_card(dir.path(), |t| t.replace("695e750a", "00000000"));
    let out = junction(&["detect", clip().to_str().unwrap(), "--model", card.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &["yolox_nano.onnx", "sha256", "695e750a", card.to_str().unwrap()]);
}

#[test]
fn model_output_does_not_fit_card() {
    // The card claims 79 classes; the model has 80: output [1, 3549, 85] against [1, 3549, 84].
    let dir = tempfile::tempdir().unwrap();
    let card = square_card(dir.path(), |t| t.replace("\"scissors\", ", ""));
    let out = junction(&["detect", clip().to_str().unwrap(), "--model", card.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &["output", "[1, 3549, 85]", "[1, 3549, 84]", card.to_str().unwrap()]);
}

/// A card that says `rectangular` for a model whose graph fixes H and W is refused at start.
#[test]
fn rectangular_card_on_a_fixed_size_model() {
    let dir = tempfile::tempdir().unwrap();
    let card = square_card(dir.path(), |t| t.replace("layout = ", "rectangular = true\nlayout = "));
    let out = junction(&["detect", clip().to_str().unwrap(), "--model", card.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &["images", "[1, 3, 416, 416]", "input.rectangular", card.to_str().unwrap()]);
}

#[test]
fn model_card_unknown_field() {
    let dir = tempfile::tempdir().unwrap();
    let card = square_card(dir.path(), |t| t.replace("[output]", "[output]\nanchors = 3"));
    let out = junction(&["detect", clip().to_str().unwrap(), "--model", card.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[card.to_str().unwrap(), "anchors"]);
}

#[test]
fn onnxruntime_library_missing() {
    let out =
        junction(&["detect", clip().to_str().unwrap(), "--onnxruntime", "/nonexistent/libonnxruntime.so"], DEADLINE);
    assert_refused(&out, &["ONNX Runtime library not found", "/nonexistent/libonnxruntime.so", "scripts/setup.sh"]);
    let out =
        junction_env(&["detect", clip().to_str().unwrap()], &[("ORT_DYLIB_PATH", "/nonexistent/lib.so")], DEADLINE);
    assert_refused(&out, &["/nonexistent/lib.so", "scripts/setup.sh"]);
}

#[test]
fn onnxruntime_library_not_a_library() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, "not a shared object").unwrap();
    let out = junction(&["detect", clip().to_str().unwrap(), "--onnxruntime", fake.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[fake.to_str().unwrap(), "failed to load"]);
}

#[test]
fn onnxruntime_outside_supported_range() {
    // A real ONNX Runtime (the PyPI 1.19.2 wheel's, installed by scripts/setup.sh), one release too old.
    let lib = repo().join(".onnxruntime/range/libonnxruntime.so.1.19.2");
    assert!(lib.is_file(), "{} missing: run scripts/setup.sh", lib.display());
    let out = junction(&["detect", clip().to_str().unwrap(), "--onnxruntime", lib.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[lib.to_str().unwrap(), "version 1.19.2", "supported range >= 1.20 and < 2.0"]);
}

#[test]
fn chosen_decoder_missing_is_named() {
    // No Jetson here: NVIDIA's V4L2 decoder is not installed. The error names it and what there is.
    let out = junction(&["detect", clip().to_str().unwrap(), "--decoder", "nvv4l2decoder"], DEADLINE);
    assert_refused(
        &out,
        &["decoder nvv4l2decoder", "is installed", "hardware video decoders here: none", "avdec_h264"],
    );
    let out = junction(&["detect", clip().to_str().unwrap(), "--decoder", "quantum"], DEADLINE);
    assert_eq!(out.code, Some(2), "clap refuses an unknown decoder: {}", out.stderr);
    assert!(out.stderr.contains("'quantum'"), "{}", out.stderr);
    assert!(out.stderr.contains("auto, software, nvv4l2decoder, nvh264dec, vaapi"), "{}", out.stderr);
}

#[test]
fn bad_uri_scheme() {
    let out = junction(&["detect", "ftp://127.0.0.1/clip.mp4"], DEADLINE);
    assert_refused(&out, &["ftp://127.0.0.1/clip.mp4", "unsupported scheme"]);
}

#[test]
fn gpu_provider_without_gpu_runtime_is_refused() {
    // The PyPI wheel is a CPU build: asking for CUDA must fail loudly, not fall back to the CPU.
    let out = junction(&["detect", clip().to_str().unwrap(), "--provider", "cuda"], DEADLINE);
    assert_refused(&out, &["cuda", "no silent fallback"]);
}

#[test]
fn unknown_test_pattern() {
    let out = junction(&["detect", "test://plaid"], DEADLINE);
    assert_refused(&out, &["test://plaid", "unknown test pattern", "smpte"]);
}

#[test]
fn audio_only_file_has_no_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.ogg");
    let made = std::process::Command::new("gst-launch-1.0")
        .args(["-q", "audiotestsrc", "num-buffers=50", "!", "vorbisenc", "!", "oggmux", "!", "filesink"])
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 (scripts/setup.sh installs gstreamer1.0-tools)");
    assert!(made.success());
    let out = junction(&["detect", path.to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[path.to_str().unwrap(), "no video track"]);
}

#[test]
fn folder_is_not_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let out = junction(&["detect", dir.path().to_str().unwrap()], DEADLINE);
    assert_refused(&out, &[dir.path().to_str().unwrap(), "a folder"]);
}
