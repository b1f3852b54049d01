//! The crate's files form no import circle: a reader can start at the bottom (names, text,
//! tokens) and read upwards, and no file needs one that needs it back. Read from the source
//! text: `crate::` and `super::` paths, resolved through the re-exports of `lib.rs` and of
//! each folder's `mod.rs`. Test modules are left out (tests may look anywhere).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Source files by node name: `key_id`, `credential` (its mod.rs), `credential/fetch`.
fn read_sources() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let folder = path.file_name().unwrap().to_str().unwrap().to_owned();
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().path();
                let stem = inner.file_stem().unwrap().to_str().unwrap();
                let name = if stem == "mod" {
                    folder.clone()
                } else {
                    format!("{folder}/{stem}")
                };
                files.insert(name, std::fs::read_to_string(&inner).unwrap());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            files.insert(stem, std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

/// The text without comments and without the trailing `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines.get(i + 1).is_some_and(|l| l.starts_with("mod tests"))
        {
            break;
        }
        if !line.trim_start().starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A `use` tree or path after `crate::`/`super::`: the leading identifier paths it names.
fn paths(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{') {
        let inner = &inner[..inner.rfind('}').unwrap_or(inner.len())];
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&inner[start..]);
        return parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .flat_map(paths)
            .collect();
    }
    let ident: String = tree
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return Vec::new();
    }
    match tree[ident.len()..].strip_prefix("::") {
        Some(rest) => {
            let subs = paths(rest);
            if subs.is_empty() {
                vec![vec![ident]]
            } else {
                subs.into_iter()
                    .map(|mut p| {
                        p.insert(0, ident.clone());
                        p
                    })
                    .collect()
            }
        }
        None => vec![vec![ident]],
    }
}

/// The path tree that follows each `prefix` in `code`.
fn references<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` inside a longer identifier (`my_crate::`) is not ours.
            !code[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            // A path ends at the first character that cannot continue it.
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|(_, c)| match c {
                    '{' => {
                        depth += 1;
                        false
                    }
                    '}' if depth > 0 => {
                        depth -= 1;
                        false
                    }
                    c if depth > 0 => *c == ';',
                    c => !(c.is_alphanumeric() || *c == '_' || *c == ':'),
                })
                .map_or(rest.len(), |(i, _)| i);
            &rest[..end]
        })
        .collect()
}

/// `item -> module` from a file's `pub use module::{...}` statements.
fn reexports(code: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for statement in code.split(';') {
        let s = statement.trim();
        let Some(tree) = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let tree = tree.replace('\n', " ");
        let tree = tree.trim_start_matches("crate::");
        for path in paths(tree) {
            // `der_to_raw as ecdsa_der_to_raw`: the path ends before `as`; find the alias.
            let module = path[0].clone();
            let last = path.last().unwrap().clone();
            let alias = tree
                .split(&format!("{last} as "))
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_alphanumeric() && c != '_').next())
                .map(str::to_owned);
            map.insert(alias.unwrap_or(last), module);
        }
    }
    map
}

#[test]
fn no_file_of_the_crate_imports_one_that_imports_it_back() {
    let files = read_sources();
    let codes: BTreeMap<&str, String> = files
        .iter()
        .map(|(n, t)| (n.as_str(), code_of(t)))
        .collect();
    let root_exports = reexports(&codes["lib"]);
    let folder_exports: HashMap<&str, HashMap<String, String>> = codes
        .iter()
        .filter(|(n, _)| !n.contains('/') && files.keys().any(|k| k.starts_with(&format!("{n}/"))))
        .map(|(n, c)| (*n, reexports(c)))
        .collect();

    // Resolves a path to the file that defines it, `folder` being where `super::` points.
    let resolve = |folder: Option<&str>, path: &[String]| -> Option<String> {
        let first = path[0].as_str();
        if let Some(folder) = folder {
            let inner = format!("{folder}/{first}");
            if files.contains_key(&inner) {
                return Some(inner);
            }
            let module = folder_exports.get(folder)?.get(first)?;
            return Some(format!("{folder}/{module}"));
        }
        let module = if files.contains_key(first) {
            first.to_owned()
        } else {
            root_exports.get(first)?.clone()
        };
        match (folder_exports.get(module.as_str()), path.get(1)) {
            (Some(exports), Some(next)) => {
                let inner = format!("{module}/{next}");
                if files.contains_key(&inner) {
                    Some(inner)
                } else {
                    exports.get(next.as_str()).map(|m| format!("{module}/{m}"))
                }
            }
            _ => Some(module),
        }
    };

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in &codes {
        if *name == "lib" || folder_exports.contains_key(name) {
            continue; // module roots only declare and re-export
        }
        let folder = name.split_once('/').map(|(f, _)| f);
        let mut targets = BTreeSet::new();
        for tree in references(code, "crate::") {
            for path in paths(tree) {
                targets.extend(resolve(None, &path));
            }
        }
        if let Some(folder) = folder {
            for tree in references(code, "super::") {
                for path in paths(tree) {
                    targets.extend(resolve(Some(folder), &path));
                }
            }
        }
        targets.remove(*name);
        edges.insert(name.to_string(), targets);
    }
    assert!(
        edges["key_id"].contains("names")
            && edges["driver"].contains("request")
            && edges["credential/fetch"].contains("credential/arc")
            && edges["credential/auto"].contains("text"),
        "the reader must see known imports: {edges:?}"
    );

    // Depth-first search; a grey node met again closes a circle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut HashMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                let mut circle = stack[start..].to_vec();
                circle.push(node.to_owned());
                return Some(circle);
            }
            None => {}
        }
        state.insert(node.to_owned(), false);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), true);
        None
    }
    let mut state = HashMap::new();
    for node in edges.keys() {
        if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}
