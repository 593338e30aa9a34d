//! The layer rule of `src/agents`: the kit knows no room and nothing of the host, and no files of
//! the kit or of a room import each other in a cycle. Read from the `use` lines of the sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const AGENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/agents");

/// The `use` paths of a file's code (its test module left out), one per imported name.
fn use_paths(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut paths = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(rest) = statement
            .strip_prefix("use ")
            .or_else(|| statement.strip_prefix("pub use "))
            .or_else(|| statement.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        expand(&rest.split_whitespace().collect::<String>(), &mut paths);
    }
    paths
}

/// `a::{b, c::{d}}` as `a::b`, `a::c::d`.
fn expand(tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        out.push(tree.to_owned());
        return;
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&format!("{prefix}{}", &inner[start..i]), out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&format!("{prefix}{}", &inner[start..]), out);
    }
}

/// The module path of a file under `src/` (`src/agents/kit/board.rs` is `agents::kit::board`).
fn module_of(file: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = file.strip_prefix(&src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file a `use` path names, as a module path: the longest prefix that is a module file.
fn target(from: &[String], path: &str) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.split("::").collect();
    let mut module: Vec<String> = from.to_vec();
    let mut rest = &segments[..];
    match *rest.first()? {
        "crate" => {
            module.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            // A file's `super` is its folder's module (a `mod.rs` is its folder's own module).
            while rest.first() == Some(&"super") {
                module.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = None;
    for segment in rest {
        module.push((*segment).to_owned());
        let base = src.join(module.join("/"));
        if base.with_extension("rs").is_file() || base.join("mod.rs").is_file() {
            found = Some(module.clone());
        } else {
            break;
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every file's imports of other files, by module path.
fn graph(dir: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut list = Vec::new();
    files(dir, &mut list);
    list.iter()
        .map(|file| {
            let from = module_of(file);
            let source = std::fs::read_to_string(file).expect("readable");
            let to = use_paths(&source)
                .iter()
                .filter_map(|p| target(&from, p))
                .filter(|t| *t != from)
                .collect();
            (from, to)
        })
        .collect()
}

/// A cycle among the files of `folder` (imports through other folders are not followed).
fn cycle_in(folder: &[&str]) -> Option<Vec<String>> {
    let dir = Path::new(AGENTS).join(folder[1..].join("/"));
    let graph = graph(&dir);
    let inside = |m: &Vec<String>| {
        m.len() == folder.len() + 1
            && m.starts_with(&folder.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        inside: &dyn Fn(&Vec<String>) -> bool,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            return Some(path[at..].iter().map(|m| m.join("::")).collect());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten().filter(|n| inside(n)) {
            if let Some(cycle) = visit(next, graph, inside, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().filter(|n| inside(n)).find_map(|node| {
        let mut path = Vec::new();
        visit(node, &graph, &inside, &mut path, &mut done)
    })
}

#[test]
fn the_kit_uses_only_the_agent_contract_agui_and_llm() {
    let graph = graph(&Path::new(AGENTS).join("kit"));
    assert!(graph.len() >= 10, "the kit's files were read");
    let allowed = |t: &Vec<String>| match t.first().map(String::as_str) {
        Some("agui" | "llm" | "logsafe") => true,
        Some("agents") => t.len() == 1 || t.get(1).is_some_and(|m| m == "kit"),
        _ => false,
    };
    for (file, imports) in &graph {
        for import in imports {
            assert!(
                allowed(import),
                "{} imports {}: the kit must not know rooms or the host",
                file.join("::"),
                import.join("::")
            );
        }
    }
}

#[test]
fn no_files_of_the_kit_or_a_room_import_each_other_in_a_cycle() {
    for folder in [
        &["agents", "kit"][..],
        &["agents", "debate"],
        &["agents", "brainstorm"],
        &["agents", "shark_tank"],
        &["agents", "chat"],
    ] {
        if !Path::new(AGENTS).join(folder[1]).is_dir() {
            panic!("{} is not a folder", folder.join("/"));
        }
        assert_eq!(cycle_in(folder), None, "{}", folder.join("::"));
    }
}

#[test]
fn the_reader_sees_every_imported_path() {
    let mut paths =
        use_paths("use super::{a::B, c::{d, e::F}};\npub use crate::x::Y;\n#[cfg(test)]\nuse z;");
    paths.sort();
    assert_eq!(
        paths,
        [
            "crate::x::Y",
            "super::a::B",
            "super::c::d",
            "super::c::e::F"
        ]
    );
}
