//! The house's structure, checked: the box's modules form layers with no import circle and no import
//! from a lower layer to a higher one (README "Architecture" shows the same table); the contracts
//! crate imports nothing of junction; each binary's dependency tree holds what it uses and not the
//! other's (cargo tree on the lock file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::common::repo;

/// The box's modules (pipeline/lib.rs), bottom layer first. A module may import from its own layer
/// (without a circle) and from those below, never from above.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["geometry", "clock", "telemetry", "coco"]),
    ("perception", &["detect", "track"]),
    ("traffic", &["analytics", "motion", "aggregate", "scale", "schedule", "source", "snapshot"]),
    ("site", &["config", "store", "publish", "report", "calibrate", "labels", "collect"]),
    ("camera", &["camera", "sink"]),
    ("operators", &["console", "http"]),
    ("runtime", &["runtime"]),
    ("tools", &["eval", "fuzzing"]),
];

/// Code without `//` comments (doc links name modules without importing them); `://` in strings
/// (URLs) is kept.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let cut = line.match_indices("//").map(|(i, _)| i).find(|&i| i == 0 || line.as_bytes()[i - 1] != b':');
        out.push_str(&line[..cut.unwrap_or(line.len())]);
        out.push('\n');
    }
    // Unit tests may reach anywhere: only the module's own code counts.
    match out.find("#[cfg(test)]\nmod tests") {
        Some(i) => out[..i].to_owned(),
        None => out,
    }
}

/// The crate's modules each file of `module` imports (`crate::x`, `use crate::{x, y::…}`).
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let text = code(text);
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of a use group: depth-0 words before `::`, `,` or `}`.
            let mut depth = 0;
            let mut word = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    c if depth == 0 && (c.is_alphanumeric() || c == '_') => word.push(c),
                    _ => {
                        if !word.is_empty() && modules.contains(&word) {
                            out.insert(word.clone());
                        }
                        word.clear();
                    }
                }
            }
            if modules.contains(&word) {
                out.insert(word);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if modules.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module → the modules it imports, from pipeline/lib.rs's `pub mod` list and their files.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = repo().join("pipeline");
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';')))
        .map(str::to_owned)
        .collect();
    assert!(modules.len() > 20, "pipeline/lib.rs lists the modules: {modules:?}");
    let mut g = BTreeMap::new();
    for m in &modules {
        let mut files = Vec::new();
        let file = root.join(format!("{m}.rs"));
        if file.exists() {
            files.push(file);
        }
        // The module's folder, unless it is another crate or holds no Rust of this module.
        let dir = root.join(m);
        if dir.is_dir() && !dir.join("Cargo.toml").exists() {
            rust_files(&dir, &mut files);
        }
        assert!(!files.is_empty(), "module {m}: no file");
        let mut deps = BTreeSet::new();
        for f in files {
            let is_test = f.file_stem().is_some_and(|s| s.to_string_lossy().ends_with("tests"));
            if !is_test {
                deps.extend(imports(&std::fs::read_to_string(&f).unwrap(), &modules));
            }
        }
        deps.remove(m);
        g.insert(m.clone(), deps);
    }
    g
}

/// A circle of imports, if any (depth-first search).
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&m))
}

#[test]
fn modules_form_layers_without_a_circle() {
    let g = graph();
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(lm) = layer_of(m) else {
            wrong.push(format!("{m}: in no layer (add it to LAYERS and README's table)"));
            continue;
        };
        for d in deps {
            match layer_of(d) {
                Some(ld) if ld > lm => {
                    wrong.push(format!("{m} ({}) imports {d} ({}), a higher layer", LAYERS[lm].0, LAYERS[ld].0))
                }
                _ => {}
            }
        }
    }
    for (_, ms) in LAYERS {
        for m in *ms {
            if !g.contains_key(*m) {
                wrong.push(format!("{m}: in LAYERS but not a module of pipeline/lib.rs"));
            }
        }
    }
    if let Some(c) = circle(&g) {
        wrong.push(format!("import circle: {}", c.join(" → ")));
    }
    assert!(wrong.is_empty(), "{}\n\nthe graph: {g:#?}", wrong.join("\n"));
}

/// The checker finds what it must: a circle, an upward import, a grouped import, and no import in a
/// comment or a unit test.
#[test]
fn the_layer_checker_sees_circles_and_groups() {
    let modules: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    let text = "use crate::{a::X};\n/// [`crate::c`] in a doc\nlet u = \"mqtt://h\"; crate::b::f();\n#[cfg(test)]\nmod tests { use crate::c; }";
    assert_eq!(imports(text, &modules), ["a", "b"].map(String::from).into());
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["c".to_owned()].into());
    g.insert("c".into(), BTreeSet::new());
    assert_eq!(circle(&g), None);
    g.get_mut("c").unwrap().insert("a".into());
    assert_eq!(circle(&g).map(|c| c.len()), Some(4), "a → b → c → a");
}

fn tree(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-e", "normal", "--prefix", "none", "-p", package])
        .current_dir(repo())
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crates(tree: &str) -> BTreeSet<String> {
    tree.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

/// Each binary links what it uses: the box no PostgreSQL client and no JSON Schema validator; the
/// centre no GStreamer, OpenCV or ONNX Runtime; the contracts nothing of junction.
#[test]
fn each_binary_depends_on_what_it_uses() {
    let of_box = crates(&tree("junction"));
    let centre = crates(&tree("junction-centre"));
    let schema = crates(&tree("junction-schema"));
    for c in ["gstreamer", "opencv", "ort", "rusqlite"] {
        assert!(of_box.contains(c), "the box uses {c}");
        assert!(!centre.contains(c), "the centre links {c}");
    }
    for c in ["tokio-postgres", "postgres-protocol", "jsonschema", "tokio-postgres-rustls"] {
        assert!(centre.contains(c), "the centre uses {c}");
        assert!(!of_box.contains(c), "the box links {c}");
    }
    assert!(of_box.contains("junction-schema") && centre.contains("junction-schema"));
    let ours: Vec<&String> = schema.iter().filter(|c| c.starts_with("junction")).collect();
    assert_eq!(ours, ["junction-schema"], "the contracts import nothing of junction");
}
