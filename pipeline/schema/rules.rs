//! The counting rules of a camera, as written: the `[[line]]`, `[[zone]]`, `[[approach]]` and
//! `[[loop]]` tables of a calibration file, the same documents as the console's rules editor serves
//! and accepts them as JSON ([`RulesDoc`]), and the writer that puts an edited [`RulesDoc`] back into
//! the file's text. Coordinates are frame pixels of the calibration's `frame_size`.
//!
//! The box resolves these into `analytics`' specs (checked shapes, `FramePoint`s); nothing here
//! validates beyond what serde refuses.

use serde::{Deserialize, Serialize};

/// What junction counts. Motorcycles are first-class: they are most of the traffic in Da Nang.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VehicleClass {
    Car,
    Motorcycle,
    Bus,
    Truck,
    Bicycle,
    /// Pedestrians, for crossings; not a vehicle but detected by the same model.
    Person,
}

impl VehicleClass {
    pub const ALL: [VehicleClass; 6] = [
        VehicleClass::Car,
        VehicleClass::Motorcycle,
        VehicleClass::Bus,
        VehicleClass::Truck,
        VehicleClass::Bicycle,
        VehicleClass::Person,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VehicleClass::Car => "car",
            VehicleClass::Motorcycle => "motorcycle",
            VehicleClass::Bus => "bus",
            VehicleClass::Truck => "truck",
            VehicleClass::Bicycle => "bicycle",
            VehicleClass::Person => "person",
        }
    }

    /// Motorcycles and bicycles: the vehicles a rider sits on.
    pub fn is_two_wheeler(self) -> bool {
        matches!(self, VehicleClass::Motorcycle | VehicleClass::Bicycle)
    }
}

impl std::fmt::Display for VehicleClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which point of a box stands for the vehicle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Where the vehicle touches the road (side and oblique views).
    #[default]
    BottomCentre,
    /// The box centre (views from straight above).
    Centre,
}

/// Which side of a line, walking from its first point to its second, is "in".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    #[default]
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    /// Vehicles present and time occupied.
    #[default]
    Occupancy,
    /// A queue area: the same measures, read as queue presence and length in vehicles.
    Queue,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineDoc {
    pub id: String,
    /// Two points, frame pixels.
    pub points: Vec<[f32; 2]>,
    #[serde(default)]
    pub in_side: Side,
    #[serde(default)]
    pub anchor: Anchor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// Only these classes count here (e.g. ["person"] on a crosswalk); absent: every class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<VehicleClass>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDoc {
    pub id: String,
    /// Vertices, frame pixels, in order.
    pub polygon: Vec<[f32; 2]>,
    #[serde(default)]
    pub kind: ZoneKind,
    #[serde(default)]
    pub anchor: Anchor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproachDoc {
    pub id: String,
    /// A polygon over the leg's lanes, frame pixels ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon: Option<Vec<[f32; 2]>>,
    /// ... or a line across them (two points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<Vec<[f32; 2]>>,
    #[serde(default)]
    pub anchor: Anchor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopDoc {
    pub id: String,
    pub polygon: Vec<[f32; 2]>,
    /// Detector channel, 1–255: the ATSPM event parameter.
    pub channel: u16,
    #[serde(default)]
    pub anchor: Anchor,
}

/// A camera's rules as the console serves and accepts them (JSON; the calibration file holds the same
/// documents as `[[line]]`, `[[zone]]`, `[[approach]]` and `[[loop]]` tables).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesDoc {
    #[serde(default)]
    pub frame_size: Option<[u32; 2]>,
    #[serde(default)]
    pub lines: Vec<LineDoc>,
    #[serde(default)]
    pub zones: Vec<ZoneDoc>,
    #[serde(default)]
    pub approaches: Vec<ApproachDoc>,
    #[serde(default)]
    pub loops: Vec<LoopDoc>,
}

impl RulesDoc {
    /// The calibration file's text with its rules replaced by these. Everything else in it (frame
    /// size, ground points, lens, region of interest) is kept, and so are the comments of rules that
    /// stay: a rule whose id is still there is edited in place, a value left as it was keeps its
    /// trailing comment; removed rules go, new ones are appended.
    pub fn apply_to(&self, calibration: &str) -> Result<String, String> {
        use toml_edit::{Array, DocumentMut, Item, Table, Value, value};
        let mut doc: DocumentMut = calibration.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
        let points = |pts: &[[f32; 2]]| {
            let mut a = Array::new();
            for p in pts {
                let mut xy = Array::new();
                for c in p {
                    // Whole pixels stay integers in the file.
                    if c.fract() == 0.0 && c.abs() < 1e9 {
                        xy.push(*c as i64);
                    } else {
                        xy.push(f64::from(*c));
                    }
                }
                a.push(xy);
            }
            Value::Array(a)
        };
        let word = |v: &dyn erased::Word| Value::from(v.word());
        // Sets `key` unless it already holds that value (its comment stays); `None` removes it; a
        // default value is not added where the key is absent.
        let set = |t: &mut Table, key: &str, new: Option<Value>, default: bool| match new {
            None => {
                t.remove(key);
            }
            Some(_) if default && !t.contains_key(key) => {}
            Some(new) => {
                let same = t.get(key).and_then(Item::as_value).is_some_and(|old| {
                    let mut old = old.clone();
                    old.decor_mut().clear();
                    old.to_string().trim() == new.to_string().trim()
                });
                if !same {
                    t[key] = value(new);
                }
            }
        };
        type Fields<'a> = Vec<(&'a str, Option<Value>, bool)>;
        let mut fields: Vec<(&str, Vec<(String, Fields<'_>)>)> = Vec::new();
        fields.push((
            "line",
            self.lines
                .iter()
                .map(|l| {
                    let classes = l.classes.as_ref().map(|c| Value::Array(c.iter().map(|c| c.as_str()).collect()));
                    (
                        l.id.clone(),
                        vec![
                            ("points", Some(points(&l.points)), false),
                            ("in_side", Some(word(&l.in_side)), l.in_side == Side::default()),
                            ("anchor", Some(word(&l.anchor)), l.anchor == Anchor::default()),
                            ("lane", l.lane.as_deref().map(Value::from), false),
                            ("classes", classes, false),
                        ],
                    )
                })
                .collect(),
        ));
        fields.push((
            "zone",
            self.zones
                .iter()
                .map(|z| {
                    (
                        z.id.clone(),
                        vec![
                            ("polygon", Some(points(&z.polygon)), false),
                            ("kind", Some(word(&z.kind)), z.kind == ZoneKind::default()),
                            ("anchor", Some(word(&z.anchor)), z.anchor == Anchor::default()),
                        ],
                    )
                })
                .collect(),
        ));
        fields.push((
            "approach",
            self.approaches
                .iter()
                .map(|a| {
                    (
                        a.id.clone(),
                        vec![
                            ("polygon", a.polygon.as_deref().map(points), false),
                            ("line", a.line.as_deref().map(points), false),
                            ("anchor", Some(word(&a.anchor)), a.anchor == Anchor::default()),
                        ],
                    )
                })
                .collect(),
        ));
        fields.push((
            "loop",
            self.loops
                .iter()
                .map(|l| {
                    (
                        l.id.clone(),
                        vec![
                            ("polygon", Some(points(&l.polygon)), false),
                            ("channel", Some(Value::from(i64::from(l.channel))), false),
                            ("anchor", Some(word(&l.anchor)), l.anchor == Anchor::default()),
                        ],
                    )
                })
                .collect(),
        ));
        for (key, rules) in fields {
            let mut old: Vec<Table> = match doc.remove(key) {
                Some(Item::ArrayOfTables(a)) => a.into_iter().collect(),
                Some(_) => return Err(format!("{key}: expected [[{key}]] tables")),
                None => Vec::new(),
            };
            let mut aot = toml_edit::ArrayOfTables::new();
            for (id, values) in rules {
                let at = old.iter().position(|t| t.get("id").and_then(Item::as_str) == Some(id.as_str()));
                let mut t = match at {
                    Some(i) => old.remove(i),
                    None => {
                        let mut t = Table::new();
                        t["id"] = value(id.as_str());
                        t
                    }
                };
                for (k, v, default) in values {
                    set(&mut t, k, v, default);
                }
                aot.push(t);
            }
            if !aot.is_empty() {
                doc.insert(key, Item::ArrayOfTables(aot));
            }
        }
        Ok(doc.to_string())
    }
}

/// Enum values as the calibration file spells them (their serde names).
mod erased {
    pub trait Word {
        fn word(&self) -> String;
    }
    impl<T: serde::Serialize> Word for T {
        fn word(&self) -> String {
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule reads the same from the calibration file's table and from the console's JSON: one
    /// type for both.
    #[test]
    fn one_document_in_toml_and_json() {
        #[derive(Deserialize)]
        struct File {
            line: Vec<LineDoc>,
        }
        let toml_text =
            "[[line]]\nid = \"x\"\npoints = [[1, 2], [30, 40]]\nin_side = \"right\"\nclasses = [\"person\"]\n";
        let from_toml = toml::from_str::<File>(toml_text).expect("toml").line;
        let json =
            r#"{"lines": [{"id": "x", "points": [[1, 2], [30, 40]], "in_side": "right", "classes": ["person"]}]}"#;
        let from_json = serde_json::from_str::<RulesDoc>(json).expect("json").lines;
        assert_eq!(format!("{from_toml:?}"), format!("{from_json:?}"));
        assert_eq!(from_json[0].anchor, Anchor::BottomCentre);
        // Unknown fields are refused in both.
        assert!(toml::from_str::<File>(&toml_text.replace("in_side", "inside")).is_err());
        assert!(serde_json::from_str::<RulesDoc>(&json.replace("in_side", "inside")).is_err());
    }

    /// Written back: a changed value is replaced, the rest of the file (comments, other tables) kept,
    /// and a default not spelled out in the file is not added.
    #[test]
    fn the_writer_edits_only_what_changed() {
        let text =
            "frame_size = [640, 360] # the stream's\n\n[[line]]\nid = \"x\" # kerb\npoints = [[1, 2], [30, 40]]\n";
        let mut doc = RulesDoc::default();
        doc.lines.push(LineDoc {
            id: "x".into(),
            points: vec![[1.0, 2.0], [30.0, 41.5]],
            in_side: Side::Left,
            anchor: Anchor::Centre,
            lane: None,
            classes: None,
        });
        let out = doc.apply_to(text).expect("written");
        assert!(out.starts_with("frame_size = [640, 360] # the stream's\n"), "{out}");
        assert!(out.contains("id = \"x\" # kerb"), "{out}");
        assert!(out.contains("points = [[1, 2], [30, 41.5]]"), "{out}");
        assert!(out.contains("anchor = \"centre\""), "{out}");
        assert!(!out.contains("in_side"), "{out}");
    }
}
