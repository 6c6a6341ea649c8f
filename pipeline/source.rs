//! Camera sources: a GStreamer pipeline from a URI to frames of the region the detector sees, scaled.
//!
//! ```text
//! file / rtsp / http:  uridecodebin ─┐
//! v4l2://dev/videoN:   v4l2src ! decodebin ─┤
//! test://pattern:      videotestsrc ─┘─▶ videocrop ! videoscale ! videoconvert ! capsfilter ! appsink
//! ```
//!
//! When the decoded caps arrive, the frame's [`Plan`] is made: videocrop cuts the region of interest
//! (the rules' surroundings, or the whole frame) and the capsfilter is set to the size the region is
//! scaled to (one model input's letterbox, or the mosaic of its tiles) in the model's channel order.
//! Cropping and scaling come before colour conversion: scaling first was 1.6–1.9× faster at 1080p. The
//! padding to the full model input is written by the tensor fill ([`crate::detect::fill`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::detect::ImageView;
use crate::detect::card::ChannelOrder;
pub use junction_schema::site::{Decoder, OnInferenceBusy};

use crate::geometry::{LetterboxAlign, Plan, RegionSpec, Size, TileGrid, TileSpec};

/// Frames a `keep_latest` camera holds for the analysis, taken oldest first. One more than the newest
/// absorbs one analysis round that overran the frame period (a slow inference on a box whose cores the
/// decoders share): the frame is analysed a period late instead of lost. Under sustained overload the
/// scheduler defers detections so that rounds fit the period ([`crate::schedule`]) and the lag drains
/// away; a stall longer than two periods still drops, and counts the drop.
pub const KEEP_LATEST_FRAMES: u32 = 2;

/// A camera address, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceUri {
    File(PathBuf),
    /// `rtsp://`, `rtsps://`, `http://`, `https://`: handed to `uridecodebin`.
    Network(String),
    /// `v4l2:///dev/video0` (or `v4l2://dev/video0`).
    V4l2(PathBuf),
    /// `test://[pattern][?width=W&height=H&fps=F]`: GStreamer's `videotestsrc`, live.
    Test {
        pattern: String,
        size: Size,
        fps: u32,
    },
}

impl SourceUri {
    pub fn parse(uri: &str) -> Result<Self, SourceError> {
        let bad = |reason: &str| SourceError::BadUri { uri: redact(uri), reason: reason.to_owned() };
        let Some((scheme, rest)) = uri.split_once("://") else {
            if uri.is_empty() {
                return Err(bad("empty"));
            }
            return Ok(SourceUri::File(PathBuf::from(uri)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                gst::glib::filename_from_uri(uri).map(|(p, _)| SourceUri::File(p)).map_err(|e| bad(&e.to_string()))
            }
            "rtsp" | "rtsps" | "rtspt" | "http" | "https" => {
                if rest.is_empty() {
                    return Err(bad("no host"));
                }
                Ok(SourceUri::Network(uri.to_owned()))
            }
            "v4l2" => {
                let dev = rest.trim_start_matches('/');
                if dev.is_empty() {
                    return Err(bad("no device (v4l2:///dev/video0)"));
                }
                Ok(SourceUri::V4l2(Path::new("/").join(dev)))
            }
            "test" => {
                let (pattern, query) = rest.split_once('?').unwrap_or((rest, ""));
                let mut size = Size::new(640, 360);
                let mut fps = 10;
                for kv in query.split('&').filter(|s| !s.is_empty()) {
                    let (k, v) =
                        kv.split_once('=').ok_or_else(|| bad(&format!("query item {kv:?} is not key=value")))?;
                    let n: u32 = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(&format!("{k}={v:?} is not a positive integer")))?;
                    match k {
                        "width" => size.width = n,
                        "height" => size.height = n,
                        "fps" => fps = n,
                        _ => return Err(bad(&format!("unknown query key {k:?} (width, height, fps)"))),
                    }
                }
                let pattern = if pattern.is_empty() { "smpte" } else { pattern }.to_owned();
                Ok(SourceUri::Test { pattern, size, fps })
            }
            other => Err(bad(&format!("unsupported scheme {other:?} (file, rtsp, rtsps, http, https, v4l2, test)"))),
        }
    }

    /// Live sources produce frames in real time whether or not they are taken.
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceUri::File(_))
    }
}

/// Replaces the password of `scheme://user:password@host/...` with `***`: credentials never reach logs.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    // Credentials end at the last '@': a password may hold '/', '?', '#' or '@' as people type them, so
    // '/' does not end the authority. There are credentials when what comes before that '@' has no
    // '/' (user:pass@host), or a ':' before its first '/' (user:pa/ss@host); else the '@' is in the
    // path (host/a@b). A path holding '@' after credentials hides the host too: the safe side.
    let userinfo = rest.rfind('@').filter(|&at| {
        let before = &rest[..at];
        !before.contains('/') || before.split('/').next().is_some_and(|first| first.contains(':'))
    });
    match userinfo {
        Some(at) => {
            let user = rest[..at].split([':', '/']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => uri.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {uri}: bad URI: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("source {path}: no such file")]
    FileNotFound { path: PathBuf },
    #[error("source {uri}: GStreamer: {message}")]
    Gst { uri: String, message: String },
    /// An error posted on the pipeline's bus while streaming. `hint` says what it means for the user.
    #[error("source {uri}: {hint}{message} [element {element}{}]", debug.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Stream { uri: String, hint: &'static str, element: String, message: String, debug: Option<String> },
    #[error("source {uri}: no video frame within {}s of opening (unreachable, or not sending video)", timeout.as_secs_f32())]
    OpenTimeout { uri: String, timeout: Duration },
    #[error("source {uri}: no video frame for {}s (stalled)", timeout.as_secs_f32())]
    Stalled { uri: String, timeout: Duration },
    #[error("source {uri}: the stream ended without a video frame (not a video, or no video track)")]
    NoVideo { uri: String },
    #[error(
        "decoder {decoder}: no such GStreamer video decoder is installed (hardware video decoders here: \
         {hardware}; H.264 decoders: {h264})"
    )]
    DecoderMissing { decoder: &'static str, hardware: String, h264: String },
}

/// Where frame wall-clock times come from.
#[derive(Debug, Clone, Copy)]
pub enum WallClock {
    /// `start` + (PTS − first PTS): files, whose PTS is stream time.
    FromStart(SystemTime),
    /// The capture time, from the pipeline clock: live sources.
    Capture,
}

#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Model input in pixels; frames arrive scaled to fit it.
    pub input: Size,
    /// The model takes any input whose sides are multiples of this (model pixels): inputs are cut to
    /// the frame's shape ([`Plan::for_frame`]). `None`: always `input`.
    pub stride: Option<u32>,
    pub align: LetterboxAlign,
    pub channel_order: ChannelOrder,
    /// `None`: `KeepLatest` for live sources, `Block` for files.
    pub on_inference_busy: Option<OnInferenceBusy>,
    /// Longest wait for the first frame (connection, negotiation).
    pub open_timeout: Duration,
    /// Longest wait between frames once streaming (`None`: no limit).
    pub stall_timeout: Option<Duration>,
    /// Wall-clock time of a file's first frame (`None`: the file's creation or modification time).
    pub start: Option<SystemTime>,
    /// Release a file's frames at its own rate, as a camera would (with `KeepLatest`: dropping what
    /// the analysis cannot keep up with). For replaying recordings as live load.
    pub realtime: bool,
    /// The part of the frame the detector sees.
    pub region: RegionSpec,
    /// How that region is split into model inputs.
    pub tiles: TileSpec,
    /// Which video decoder: GStreamer's choice by rank, or one kind ([`Decoder`]).
    pub decoder: Decoder,
}

impl SourceOptions {
    /// Frames scaled the way `card`'s model takes them (input size, stride, letterbox, channel order),
    /// every other option at its default.
    pub fn for_card(card: &crate::detect::ModelCard) -> Self {
        Self {
            input: card.input_size(),
            stride: card.input_stride(),
            align: card.letterbox.align,
            channel_order: card.input.channel_order,
            ..Self::default()
        }
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            input: Size::new(416, 416),
            stride: None,
            align: LetterboxAlign::TopLeft,
            channel_order: ChannelOrder::Bgr,
            on_inference_busy: None,
            open_timeout: Duration::from_secs(10),
            stall_timeout: None,
            start: None,
            realtime: false,
            region: RegionSpec::Full,
            tiles: TileSpec::Grid(TileGrid::ONE),
            decoder: Decoder::Auto,
        }
    }
}

/// One decoded frame: its region of interest, scaled, in the model's channel order.
pub struct Frame {
    /// Buffer PTS (stream time for files, running time for live sources).
    pub pts: Duration,
    /// Wall-clock time of capture (UTC), see [`WallClock`].
    pub wall: SystemTime,
    /// Source frame size, the region, the size it was scaled to, and each model input's letterbox.
    pub plan: Arc<Plan>,
    buffer: gst::MappedBuffer<gst::buffer::Readable>,
    stride: usize,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("pts", &self.pts).field("plan", &self.plan).finish_non_exhaustive()
    }
}

impl Frame {
    /// Source frame size in pixels (negotiated caps of the decoded stream).
    pub fn frame_size(&self) -> Size {
        self.plan.frame
    }

    /// The scaled region (`plan.scaled` pixels), packed 3 × 8 bit.
    pub fn image(&self) -> ImageView<'_> {
        ImageView {
            data: self.buffer.as_slice(),
            width: self.plan.scaled.width,
            height: self.plan.scaled.height,
            stride: self.stride,
        }
    }

    /// What the detector needs of this frame.
    pub fn job(&self) -> crate::detect::Job<'_> {
        crate::detect::Job { image: self.image(), plan: &self.plan }
    }
}

/// What [`Source::poll`] found.
#[derive(Debug)]
pub enum Poll {
    Frame(Frame),
    /// Nothing yet.
    Idle,
    /// Clean end of stream.
    Ended,
}

/// Frames decoded and handed over, for drop accounting.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Frames that reached the appsink (after decode and scale).
    pub decoded: AtomicU64,
}

/// Plans each frame (region, scaled size, tiles) from the negotiated caps and sets the crop and
/// scale elements to it; shared by the caps probe (streaming thread) and [`Source::set_plan`].
struct Planner {
    plan: Arc<Mutex<Option<Arc<Plan>>>>,
    /// The decoded frame size and pixel aspect ratio, once negotiated.
    negotiated: Mutex<Option<(Size, gst::Fraction)>>,
    tiles: Mutex<TileSpec>,
    filter: gst::Element,
    crop: gst::Element,
    format: gst_video::VideoFormat,
    input: Size,
    stride: Option<u32>,
    align: LetterboxAlign,
    region: Mutex<RegionSpec>,
}

impl Planner {
    fn apply(&self, frame: Size, par: gst::Fraction) {
        let Ok(tiles) = self.tiles.lock().map(|t| *t) else { return };
        let Ok(region) = self.region.lock().map(|r| *r) else { return };
        let p = Plan::for_frame(frame, &region, &tiles, self.input, self.align, self.stride);
        let r = p.region;
        self.crop.set_property("left", r.x as i32);
        self.crop.set_property("top", r.y as i32);
        self.crop.set_property("right", (frame.width - r.x - r.width) as i32);
        self.crop.set_property("bottom", (frame.height - r.y - r.height) as i32);
        let mut caps = gst_video::VideoCapsBuilder::new()
            .format(self.format)
            .width(p.scaled.width as i32)
            .height(p.scaled.height as i32);
        // A letterbox keeps the aspect ratio (and so the pixels' shape); a stretch does not.
        if self.align != LetterboxAlign::Stretch || p.tiles.len() > 1 {
            caps = caps.pixel_aspect_ratio(par);
        }
        self.filter.set_property("caps", caps.build());
        tracing::debug!(frame = %frame, region = %r, scaled = %p.scaled, tiles = p.tiles.len(), "frame plan");
        if let Ok(mut slot) = self.plan.lock() {
            *slot = Some(Arc::new(p));
        }
    }
}

/// A running GStreamer pipeline for one camera.
pub struct Source {
    uri: String,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    plan: Arc<Mutex<Option<Arc<Plan>>>>,
    planner: Arc<Planner>,
    counters: Arc<SourceCounters>,
    opts: SourceOptions,
    policy: OnInferenceBusy,
    wall: WallClock,
    opened: Instant,
    last_frame: Option<Instant>,
    first_pts: Option<gst::ClockTime>,
    delivered: u64,
    /// Number (from 0, in the order they reached the appsink) of the last frame taken from it.
    last_taken: Option<u64>,
    /// Frames skipped because they were scaled before the stream renegotiated its size.
    stale: u64,
    secret: Option<String>,
    /// Time between frames the stream's caps announce (`None`: unknown, or a variable rate).
    caps_period: Option<Duration>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("uri", &self.uri).finish_non_exhaustive()
    }
}

impl Source {
    /// Builds the pipeline and starts it. Errors that appear while streaming come from [`Source::next_frame`].
    pub fn open(uri: &str, opts: SourceOptions) -> Result<Self, SourceError> {
        let shown = redact(uri);
        let kind = SourceUri::parse(uri)?;
        check_decoder_installed(&opts.decoder)?;
        let gst_err = |message: String| SourceError::Gst { uri: shown.clone(), message };
        gst::init().map_err(|e| gst_err(e.to_string()))?;

        let make = |factory: &str| {
            gst::ElementFactory::make(factory).build().map_err(|_| {
                gst_err(format!("element {factory:?} is missing: install the GStreamer plugins (scripts/setup.sh)"))
            })
        };
        let pipeline = gst::Pipeline::with_name("junction-source");
        let crop = make("videocrop")?;
        let scale = make("videoscale")?;
        // Never GStreamer's black borders: the tensor fill pads with the model's value.
        scale.set_property("add-borders", false);
        let convert = make("videoconvert")?;
        let filter = make("capsfilter")?;
        let format = match opts.channel_order {
            ChannelOrder::Bgr => gst_video::VideoFormat::Bgr,
            ChannelOrder::Rgb => gst_video::VideoFormat::Rgb,
        };
        filter.set_property("caps", gst_video::VideoCapsBuilder::new().format(format).build());
        let policy = opts.on_inference_busy.unwrap_or(if kind.is_live() {
            OnInferenceBusy::KeepLatest
        } else {
            OnInferenceBusy::Block
        });
        let sink = gst_app::AppSink::builder()
            .name("frames")
            // Real-time replay of a recording: frames are released at the clip's own rate.
            .sync(opts.realtime)
            .max_buffers(if policy == OnInferenceBusy::KeepLatest { KEEP_LATEST_FRAMES } else { 4 })
            .drop(policy == OnInferenceBusy::KeepLatest)
            .build();
        pipeline.add_many([&crop, &scale, &convert, &filter, sink.upcast_ref()]).map_err(|e| gst_err(e.to_string()))?;
        gst::Element::link_many([&crop, &scale, &convert, &filter, sink.upcast_ref()])
            .map_err(|e| gst_err(e.to_string()))?;

        let crop_sink = crop.static_pad("sink").ok_or_else(|| gst_err("videocrop has no sink pad".into()))?;
        let wall = match &kind {
            SourceUri::File(path) => {
                if path.is_dir() {
                    return Err(SourceError::BadUri { uri: shown, reason: "a folder, not a video file".into() });
                }
                if !path.is_file() {
                    return Err(SourceError::FileNotFound { path: path.clone() });
                }
                let start = opts.start.or_else(|| {
                    let meta = std::fs::metadata(path).ok()?;
                    meta.created().or_else(|_| meta.modified()).ok()
                });
                WallClock::FromStart(start.unwrap_or_else(SystemTime::now))
            }
            _ => opts.start.map_or(WallClock::Capture, WallClock::FromStart),
        };
        match &kind {
            SourceUri::File(path) => {
                let abs = std::fs::canonicalize(path).map_err(|_| SourceError::FileNotFound { path: path.clone() })?;
                let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| gst_err(e.to_string()))?;
                add_decodebin(
                    &pipeline,
                    "uridecodebin",
                    Some(uri.as_str()),
                    None,
                    &crop_sink,
                    &opts.decoder,
                    &gst_err,
                )?;
            }
            SourceUri::Network(uri) => {
                let open_timeout_us = opts.open_timeout.as_micros().min(u128::from(u64::MAX)) as u64;
                let dec =
                    add_decodebin(&pipeline, "uridecodebin", Some(uri), None, &crop_sink, &opts.decoder, &gst_err)?;
                dec.connect("source-setup", false, move |args| {
                    if let Some(src) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                        // rtspsrc: bound the TCP connect and give the jitterbuffer 200 ms.
                        if src.has_property_with_type("tcp-timeout", u64::static_type()) {
                            src.set_property("tcp-timeout", open_timeout_us);
                        }
                        if src.has_property_with_type("latency", u32::static_type()) {
                            src.set_property("latency", 200u32);
                        }
                    }
                    None
                });
            }
            SourceUri::V4l2(dev) => {
                let src = gst::ElementFactory::make("v4l2src")
                    .property("device", dev.display().to_string())
                    .build()
                    .map_err(|_| gst_err("element \"v4l2src\" is missing: install gstreamer1.0-plugins-good".into()))?;
                pipeline.add(&src).map_err(|e| gst_err(e.to_string()))?;
                add_decodebin(&pipeline, "decodebin", None, Some(&src), &crop_sink, &opts.decoder, &gst_err)?;
            }
            SourceUri::Test { pattern, size, fps } => {
                let src = make("videotestsrc")?;
                src.set_property("is-live", true);
                let class = src
                    .find_property("pattern")
                    .and_then(|p| gst::glib::EnumClass::with_type(p.value_type()))
                    .ok_or_else(|| gst_err("videotestsrc has no pattern property".into()))?;
                let value = class.to_value_by_nick(pattern).ok_or_else(|| SourceError::BadUri {
                    uri: shown.clone(),
                    reason: format!(
                        "unknown test pattern {pattern:?} (one of: {})",
                        class.values().iter().map(|v| v.nick()).collect::<Vec<_>>().join(", ")
                    ),
                })?;
                src.set_property_from_value("pattern", &value);
                let caps = make("capsfilter")?;
                caps.set_property(
                    "caps",
                    gst_video::VideoCapsBuilder::new()
                        .width(size.width as i32)
                        .height(size.height as i32)
                        .framerate(gst::Fraction::new(*fps as i32, 1))
                        .build(),
                );
                pipeline.add_many([&src, &caps]).map_err(|e| gst_err(e.to_string()))?;
                gst::Element::link_many([&src, &caps, &crop]).map_err(|e| gst_err(e.to_string()))?;
            }
        }

        // When the decoded caps arrive (before videocrop sees them): plan the frame, set the crop and
        // the scaled size.
        let planner = Arc::new(Planner {
            plan: Arc::default(),
            negotiated: Mutex::new(None),
            tiles: Mutex::new(opts.tiles),
            filter: filter.clone(),
            crop: crop.clone(),
            format,
            input: opts.input,
            stride: opts.stride,
            align: opts.align,
            region: Mutex::new(opts.region),
        });
        {
            let planner = planner.clone();
            crop_sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_pad, info| {
                if let Some(gst::EventView::Caps(ev)) = info.event().map(|e| e.view())
                    && let Ok(vi) = gst_video::VideoInfo::from_caps(ev.caps())
                {
                    let frame = Size::new(vi.width(), vi.height());
                    if let Ok(mut n) = planner.negotiated.lock() {
                        *n = Some((frame, vi.par()));
                    }
                    planner.apply(frame, vi.par());
                }
                gst::PadProbeReturn::Ok
            });
        }
        let plan = planner.plan.clone();
        let counters: Arc<SourceCounters> = Arc::default();
        if let Some(pad) = sink.static_pad("sink") {
            let counters = counters.clone();
            // Each buffer carries its number in its offset (nothing after the appsink reads it):
            // drops are counted from the numbers the caller receives, not from this count, which
            // runs ahead by the frames between the pad and the queue (with `sync`, a frame waits
            // here for its time: a frame period).
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let n = counters.decoded.fetch_add(1, Ordering::Relaxed);
                if let Some(buffer) = info.buffer_mut() {
                    buffer.make_mut().set_offset(n);
                }
                gst::PadProbeReturn::Ok
            });
        }

        let bus = pipeline.bus().ok_or_else(|| gst_err("pipeline has no bus".into()))?;
        let secret = uri_password(uri);
        let mut source = Self {
            uri: shown.clone(),
            pipeline,
            sink,
            bus,
            plan,
            planner,
            counters,
            opts,
            policy,
            wall,
            opened: Instant::now(),
            last_frame: None,
            first_pts: None,
            delivered: 0,
            last_taken: None,
            stale: 0,
            caps_period: None,
            secret,
        };
        if source.pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus.
            source.check_bus()?;
            return Err(gst_err("the pipeline refused to start".into()));
        }
        Ok(source)
    }

    /// The URI with any password replaced.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Crops and tiles anew from the next frame on (the scale chosen from the vehicles): the scaled
    /// size follows the region and the grid. Frames already scaled to the old size are skipped (and
    /// counted as dropped), as after a renegotiation.
    pub fn set_plan(&self, region: RegionSpec, tiles: TileSpec) {
        if let Ok(mut t) = self.planner.tiles.lock() {
            *t = tiles;
        }
        if let Ok(mut r) = self.planner.region.lock() {
            *r = region;
        }
        let negotiated = self.planner.negotiated.lock().ok().and_then(|n| *n);
        if let Some((frame, par)) = negotiated {
            self.planner.apply(frame, par);
        }
    }

    /// The plan frames are scaled to now (`None` before the caps are negotiated).
    pub fn plan(&self) -> Option<Arc<Plan>> {
        self.plan.lock().ok().and_then(|p| p.clone())
    }

    pub fn counters(&self) -> &Arc<SourceCounters> {
        &self.counters
    }

    /// Frames handed to the caller so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Time between frames the stream's caps announce, once a frame arrived (`None`: unknown, or a
    /// variable rate).
    pub fn caps_period(&self) -> Option<Duration> {
        self.caps_period
    }

    /// Frames are dropped while the caller is busy (`keep_latest`), rather than the decoder held.
    pub fn drops_when_busy(&self) -> bool {
        self.policy == OnInferenceBusy::KeepLatest
    }

    /// Frames dropped: with `Block`, only those queued at the old size when the stream renegotiated;
    /// with `KeepLatest`, frames that reached the appsink before the last one taken from it and were
    /// not delivered (because the caller was busy, or stale).
    pub fn dropped(&self) -> u64 {
        match self.policy {
            OnInferenceBusy::Block => self.stale,
            // Every frame numbered before the last one taken and not delivered (dropped by the
            // appsink, or stale); a frame still on its way is not counted until a later one arrives.
            OnInferenceBusy::KeepLatest => self.last_taken.map_or(0, |n| (n + 1).saturating_sub(self.delivered)),
        }
    }

    /// The next frame, waiting as long as it takes; `Ok(None)` at a clean end of stream.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            match self.poll(Duration::from_millis(50))? {
                Poll::Frame(f) => return Ok(Some(f)),
                Poll::Ended => return Ok(None),
                Poll::Idle => {}
            }
        }
    }

    /// Waits at most `timeout` for a frame (zero: only takes one already waiting). Errors when the
    /// stream failed, never delivered a frame within the open timeout, or stalled.
    pub fn poll(&mut self, timeout: Duration) -> Result<Poll, SourceError> {
        self.check_bus()?;
        let wait = gst::ClockTime::from_nseconds(timeout.as_nanos().min(u128::from(u64::MAX)) as u64);
        if let Some(sample) = self.sink.try_pull_sample(wait) {
            return Ok(self.frame_from(sample)?.map_or(Poll::Idle, Poll::Frame));
        }
        // Samples queued before EOS were pulled above; a stream that ended without one had no video.
        if self.sink.is_eos() {
            if self.delivered == 0 {
                return Err(SourceError::NoVideo { uri: self.uri.clone() });
            }
            return Ok(Poll::Ended);
        }
        match self.last_frame {
            None if self.opened.elapsed() > self.opts.open_timeout => {
                Err(SourceError::OpenTimeout { uri: self.uri.clone(), timeout: self.opts.open_timeout })
            }
            Some(t) if self.opts.stall_timeout.is_some_and(|s| t.elapsed() > s) => {
                let timeout = self.opts.stall_timeout.unwrap_or_default();
                Err(SourceError::Stalled { uri: self.uri.clone(), timeout })
            }
            _ => Ok(Poll::Idle),
        }
    }

    fn check_bus(&mut self) -> Result<(), SourceError> {
        use gst::MessageView;
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]) {
            match msg.view() {
                MessageView::Error(e) => {
                    return Err(SourceError::Stream {
                        uri: self.uri.clone(),
                        hint: hint(&e.error(), e.debug().as_deref().unwrap_or("")),
                        element: e.src().map(|s| s.path_string().to_string()).unwrap_or_else(|| "pipeline".into()),
                        message: self.scrub(&e.error().to_string()),
                        debug: e.debug().and_then(|d| debug_detail(&d)).map(|d| self.scrub(&d)),
                    });
                }
                MessageView::Warning(w) => {
                    tracing::warn!(
                        uri = %self.uri,
                        element = %w.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        debug = %w.debug().map(|d| self.scrub(&d)).unwrap_or_default(),
                        "GStreamer warning: {}",
                        self.scrub(&w.error().to_string())
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the URI's password from GStreamer's text, which may quote the URI.
    fn scrub(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => text.replace(s.as_str(), "***"),
            None => text.to_owned(),
        }
    }

    fn frame_from(&mut self, sample: gst::Sample) -> Result<Option<Frame>, SourceError> {
        let err = |message: &str| SourceError::Gst { uri: self.uri.clone(), message: message.to_owned() };
        let caps = sample.caps().ok_or_else(|| err("sample without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| err("sample caps are not raw video"))?;
        let buffer = sample.buffer_owned().ok_or_else(|| err("sample without buffer"))?;
        let n = buffer.offset();
        if n != u64::MAX /* GST_BUFFER_OFFSET_NONE */ && self.last_taken.is_none_or(|l| n > l) {
            self.last_taken = Some(n);
        }
        let pts = buffer.pts().unwrap_or(gst::ClockTime::ZERO);
        let plan = self
            .plan
            .lock()
            .map_err(|_| err("plan state poisoned"))?
            .clone()
            .ok_or_else(|| err("frame before caps"))?;
        if plan.scaled != Size::new(info.width(), info.height()) {
            // A buffer queued before the stream renegotiated (at most 4 for files, 2 live): mapped with
            // the new plan, every box would land in the wrong place. Skipped, and counted as dropped.
            self.stale += 1;
            return Ok(None);
        }
        let fps = info.fps();
        self.caps_period = (fps.numer() > 0 && fps.denom() > 0)
            .then(|| Duration::from_secs_f64(f64::from(fps.denom()) / f64::from(fps.numer())));
        let stride = usize::try_from(info.stride()[0]).map_err(|_| err("negative stride"))?;
        let buffer = buffer.into_mapped_buffer_readable().map_err(|_| err("buffer not readable"))?;

        let wall = match self.wall {
            WallClock::FromStart(start) => {
                let first = *self.first_pts.get_or_insert(pts);
                start + Duration::from_nanos(pts.saturating_sub(first).nseconds())
            }
            WallClock::Capture => capture_time(&self.pipeline, &sample, pts),
        };
        self.last_frame = Some(Instant::now());
        self.delivered += 1;
        Ok(Some(Frame { pts: Duration::from_nanos(pts.nseconds()), wall, plan, buffer, stride }))
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Adds `uridecodebin` (with `uri`) or `decodebin` (after `upstream`) and links its video pad, when it
/// appears, to `target`.
fn add_decodebin(
    pipeline: &gst::Pipeline,
    factory: &str,
    uri: Option<&str>,
    upstream: Option<&gst::Element>,
    target: &gst::Pad,
    decoder: &Decoder,
    gst_err: &dyn Fn(String) -> SourceError,
) -> Result<gst::Element, SourceError> {
    let mut builder = gst::ElementFactory::make(factory);
    if let Some(uri) = uri {
        builder = builder.property("uri", uri);
    }
    let dec = builder
        .build()
        .map_err(|_| gst_err(format!("element {factory:?} is missing: install gstreamer1.0-plugins-base")))?;
    pipeline.add(&dec).map_err(|e| gst_err(e.to_string()))?;
    if *decoder != Decoder::Auto {
        // decodebin asks before trying each element: video decoders other than the chosen kind are
        // skipped (GstAutoplugSelectResult: 0 try, 2 skip). The enum type exists once decodebin does.
        if gst::glib::Type::from_name("GstAutoplugSelectResult").is_none() {
            return Err(gst_err("decodebin has no autoplug-select result type".into()));
        }
        let decoder = decoder.clone();
        dec.connect("autoplug-select", false, move |args| {
            let factory = args.get(3).and_then(|v| v.get::<gst::ElementFactory>().ok());
            let allowed = factory.is_none_or(|f| !is_video_decoder(&f) || allows(&decoder, &f));
            let class =
                gst::glib::Type::from_name("GstAutoplugSelectResult").and_then(gst::glib::EnumClass::with_type)?;
            class.to_value(if allowed { 0 } else { 2 })
        });
    }
    if let Some(up) = upstream {
        up.link(&dec).map_err(|e| gst_err(e.to_string()))?;
    }
    // Every stream exposed and none of them video (an audio-only file): say so now, rather than
    // waiting for the open timeout when a loaded machine is slow to report the unlinked audio.
    let watched = target.downgrade();
    dec.connect_no_more_pads(move |dec| {
        if watched.upgrade().is_some_and(|t| !t.is_linked()) {
            gst::element_error!(
                dec,
                gst::StreamError::Failed,
                ("no video stream"),
                ["not-linked: no video pad was exposed"]
            );
        }
    });
    let target = target.downgrade();
    dec.connect_pad_added(move |_, pad| {
        let Some(target) = target.upgrade() else { return };
        if target.is_linked() {
            return;
        }
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps.structure(0).is_some_and(|s| s.name().starts_with("video/"));
        if is_video && let Err(e) = pad.link(&target) {
            tracing::error!(error = ?e, "could not link the decoded video pad");
        }
    });
    Ok(dec)
}

/// Whether `decoder` lets decodebin use `f`, a video decoder.
fn allows(decoder: &Decoder, f: &gst::ElementFactory) -> bool {
    let name = f.name();
    match decoder {
        Decoder::Auto => true,
        Decoder::Software => !is_hardware(f),
        Decoder::Nvv4l2decoder => name == "nvv4l2decoder",
        Decoder::Nvh264dec => name == "nvh264dec",
        Decoder::Vaapi => is_vaapi(&name),
    }
}

/// Refuses a decoder kind with no installed element, naming the video decoders this box has.
pub fn check_decoder_installed(decoder: &Decoder) -> Result<(), SourceError> {
    if *decoder == Decoder::Auto {
        return Ok(());
    }
    gst::init().map_err(|e| SourceError::Gst { uri: String::new(), message: e.to_string() })?;
    let decoders: Vec<gst::ElementFactory> =
        gst::ElementFactory::factories_with_type(gst::ElementFactoryType::DECODER, gst::Rank::NONE)
            .into_iter()
            .filter(is_video_decoder)
            .collect();
    if decoders.iter().any(|f| allows(decoder, f)) {
        return Ok(());
    }
    // Name the hardware decoders there are, and the H.264 ones (what cameras send): the whole list
    // of libav's software decoders is hundreds long.
    let names = |keep: &dyn Fn(&gst::ElementFactory) -> bool| {
        let mut v: Vec<String> = decoders.iter().filter(|f| keep(f)).map(|f| f.name().to_string()).collect();
        v.sort();
        if v.is_empty() { "none".to_owned() } else { v.join(", ") }
    };
    let h264 = |f: &gst::ElementFactory| {
        f.static_pad_templates()
            .iter()
            .any(|t| t.direction() == gst::PadDirection::Sink && t.caps().to_string().contains("video/x-h264"))
    };
    Err(SourceError::DecoderMissing { decoder: decoder.as_str(), hardware: names(&is_hardware), h264: names(&h264) })
}

fn is_video_decoder(f: &gst::ElementFactory) -> bool {
    let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
    klass.contains("Decoder") && klass.contains("Video")
}

fn is_vaapi(name: &str) -> bool {
    (name.starts_with("vaapi") || name.starts_with("va")) && name.ends_with("dec")
}

/// Hardware decoders: those whose class says so, and the NVIDIA, V4L2, VA-API and Intel ones whose
/// class does not (nvv4l2decoder's is plain "Codec/Decoder/Video").
fn is_hardware(f: &gst::ElementFactory) -> bool {
    let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
    let name = f.name();
    klass.contains("Hardware")
        || name.starts_with("nv")
        || name.starts_with("v4l2")
        || name.starts_with("omx")
        || name.starts_with("msdk")
        || name.starts_with("qsv")
        || is_vaapi(&name)
}

/// Capture time of a live buffer: now on the box's time line ([`crate::clock`]), less how long ago (in
/// pipeline running time) it was captured.
fn capture_time(pipeline: &gst::Pipeline, sample: &gst::Sample, pts: gst::ClockTime) -> SystemTime {
    let now = crate::clock::timeline().now();
    let running =
        sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>()).and_then(|s| s.to_running_time(pts));
    let (Some(clock), Some(base), Some(running)) = (pipeline.clock(), pipeline.base_time(), running) else {
        return now;
    };
    let now_running = clock.time().saturating_sub(base);
    now - Duration::from_nanos(now_running.saturating_sub(running).nseconds())
}

/// What a GStreamer error means for someone pointing junction at a camera or a file.
fn hint(err: &gst::glib::Error, debug: &str) -> &'static str {
    use gst::{ResourceError, StreamError};
    if err.matches(StreamError::Failed) && debug.contains("not-linked") {
        // decodebin exposed only streams nobody links: audio, subtitles.
        "no video track: "
    } else if err.matches(StreamError::TypeNotFound) || err.matches(StreamError::WrongType) {
        "not a video: "
    } else if err.matches(StreamError::Demux)
        || err.matches(StreamError::Decode)
        || err.matches(StreamError::Format)
        || err.matches(StreamError::CodecNotFound)
    {
        "not a playable video (damaged, truncated or an unsupported codec): "
    } else if err.matches(ResourceError::NotFound)
        || err.matches(ResourceError::OpenRead)
        || err.matches(ResourceError::OpenReadWrite)
        || err.matches(ResourceError::Read)
    {
        "cannot open or read the stream: "
    } else {
        ""
    }
}

/// GStreamer's debug text is `file(line): function (): element path:\ndetail`; keeps the detail, on one
/// line, or nothing when there is none.
fn debug_detail(debug: &str) -> Option<String> {
    let detail = match debug.rsplit_once(":\n") {
        Some((_, d)) => d,
        None if debug.contains("(): ") => return None,
        None => debug,
    };
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    (!detail.is_empty()).then_some(detail)
}

fn uri_password(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let pass = userinfo.split_once(':')?.1;
    (!pass.is_empty()).then(|| pass.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `keep_latest` camera whose analysis stalls holds its newest [`KEEP_LATEST_FRAMES`] frames (the
    /// slack that lets one overrun round delay a frame instead of losing it), hands them over oldest
    /// first, and counts every other frame dropped. The clip is decoded unthrottled and nothing is
    /// taken until all of it reached the appsink: only the count of frames held decides the result.
    #[test]
    fn a_stalled_live_camera_keeps_its_newest_frames_and_counts_the_rest_dropped() {
        let clip = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/street_topdown_640x360.mp4");
        let opts = SourceOptions { on_inference_busy: Some(OnInferenceBusy::KeepLatest), ..SourceOptions::default() };
        let mut source = Source::open(clip.to_str().unwrap(), opts).unwrap();
        // The clip's 753 frames; the appsink holds the newest while the stream waits at its end.
        let total = 753;
        let deadline = Instant::now() + Duration::from_secs(120);
        while source.counters().decoded.load(Ordering::Relaxed) < total {
            assert!(Instant::now() < deadline, "the clip was not decoded within 120 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut pts = Vec::new();
        while let Some(frame) = source.next_frame().unwrap() {
            pts.push(frame.pts);
        }
        // One frame of slack at least: with one, a single overrun round loses a frame.
        const { assert!(KEEP_LATEST_FRAMES >= 2) };
        assert_eq!(pts.len(), KEEP_LATEST_FRAMES as usize, "frames held: {pts:?}");
        assert!(pts.windows(2).all(|w| w[0] < w[1]), "oldest first: {pts:?}");
        // The clip's last frame is at 75.1 s (about 10 frames/s).
        assert!(pts.iter().all(|p| p.as_secs_f64() > 74.5), "the newest frames: {pts:?}");
        assert_eq!(source.dropped(), total - KEEP_LATEST_FRAMES as u64);
    }

    #[test]
    fn uris_are_classified() {
        assert_eq!(SourceUri::parse("clip.mp4").unwrap(), SourceUri::File("clip.mp4".into()));
        assert_eq!(SourceUri::parse("file:///tmp/a%20b.mp4").unwrap(), SourceUri::File("/tmp/a b.mp4".into()));
        assert!(matches!(SourceUri::parse("rtsp://10.0.0.1/s").unwrap(), SourceUri::Network(_)));
        assert_eq!(SourceUri::parse("v4l2:///dev/video2").unwrap(), SourceUri::V4l2("/dev/video2".into()));
        assert_eq!(
            SourceUri::parse("test://ball?width=320&fps=5").unwrap(),
            SourceUri::Test { pattern: "ball".into(), size: Size::new(320, 360), fps: 5 }
        );
        assert!(SourceUri::parse("ftp://x/y").unwrap_err().to_string().contains("unsupported scheme"));
        assert!(SourceUri::parse("test://?fps=0").is_err());
    }

    #[test]
    fn debug_text_is_reduced_to_its_detail() {
        let d = "../gst/isomp4/qtdemux.c(509): f (): /GstPipeline:p/GstQTDemux:qtdemux0:\nno known streams found";
        assert_eq!(debug_detail(d).as_deref(), Some("no known streams found"));
        assert_eq!(debug_detail("../a.c(1): f (): /GstPipeline:p/GstTypeFindElement:typefind"), None);
        assert_eq!(debug_detail("plain\ntext"), Some("plain text".into()));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("rtsp://admin:hunter2@10.0.0.11/stream1"), "rtsp://admin:***@10.0.0.11/stream1");
        assert_eq!(redact("rtsp://10.0.0.11/a@b"), "rtsp://10.0.0.11/a@b");
        // A password holding '/' (found in issue 21: it was logged whole).
        assert_eq!(redact("rtsp://admin:pa/ss@10.0.0.11/stream1"), "rtsp://admin:***@10.0.0.11/stream1");
        assert_eq!(redact("rtsp://admin:p@ss/w?rd@10.0.0.11/s"), "rtsp://admin:***@10.0.0.11/s");
        assert_eq!(redact("rtsp://10.0.0.11/s?token=a@b"), "rtsp://10.0.0.11/s?token=a@b");
        assert_eq!(uri_password("rtsp://admin:hunter2@h/s").as_deref(), Some("hunter2"));
        let err = SourceUri::parse("gopher://u:pw@h/").unwrap_err().to_string();
        assert!(!err.contains("pw@"), "{err}");
    }
}
