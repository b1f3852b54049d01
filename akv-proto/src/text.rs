//! How text we did not write (operator input, service answers) is shown in errors and logs:
//! printable, escaped and bounded, so that an error message can never carry terminal escapes,
//! a flood of bytes, or more of a value than a reader needs.

/// Shows a user-supplied value in an error message: escaped (no control characters, no
/// terminal escapes) and cut to a readable length.
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value
        .chars()
        .take(MAX)
        .collect::<String>()
        .escape_debug()
        .collect();
    out.insert(0, '"');
    out.push('"');
    if value.chars().count() > MAX {
        out.push_str(&format!(
            " (cut, {} characters in all)",
            value.chars().count()
        ));
    }
    out
}

/// Keeps service text printable and bounded before it reaches logs and OpenSSL's error queue.
pub(crate) fn clean_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}
