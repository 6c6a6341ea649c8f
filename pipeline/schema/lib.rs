//! junction's contracts, at the bottom of the house: what crosses a process boundary.
//!
//! - [`site`]: the site file's sections both programs read (`[mqtt]`, `[http]`), each default
//!   stated once, with their pure checks.
//! - [`rules`]: the counting rules as written (calibration file tables, the console's JSON), with
//!   the vehicle classes, anchors and sides they name, and the writer that edits them in a file.
//! - [`wire`]: one serialisable type per MQTT message and its topic (`junction.flow.v1` is the box's
//!   `FlowReport`; events, loop detector events and status are here), the schema names of
//!   deploy/schema, and the packet bound.
//!
//! Nothing here reads a file, opens a socket or imports the rest of junction.

pub mod rules;
pub mod site;
pub mod wire;
