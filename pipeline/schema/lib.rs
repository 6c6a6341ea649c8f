//! junction's contracts, at the bottom of the house: what the files and the messages say.
//!
//! - [`site`]: the site file, every section of it (`[detector]`, `[[camera]]`, the tuning sections,
//!   `[aggregate]`, `[store]`, `[mqtt]`, `[http]`), each default stated once, with their pure checks.
//! - [`calibration`]: a camera's calibration file as written (frame size, ground points, lens, region).
//! - [`rules`]: the counting rules as written (calibration file tables, the console's JSON), with
//!   the vehicle classes, anchors and sides they name, and the writer that edits them in a file.
//! - [`wire`]: one serialisable type per MQTT message and its topic (`junction.flow.v1` is the box's
//!   `FlowReport`; events, loop detector events and status are here), the schema names of
//!   deploy/schema, and the packet bound.
//!
//! Nothing here reads a file, opens a socket or imports the rest of junction.

pub mod calibration;
pub mod rules;
pub mod site;
pub mod wire;
